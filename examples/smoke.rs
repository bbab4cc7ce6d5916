use vkernel::core::prelude::*;
fn main() {
    env_logger::init();
    let m = Machine::builder().ram_size(16 << 20).build().unwrap();
    println!("path {:?}", m.trap_path());
    let vms = m.vmspace_create().unwrap();
    let mut cpu = m.take_cpu(0).unwrap();
    vms.mmap(0x1000, 0x1000, Backing::Linear { gpa: 0, prot: Prot::RX }).unwrap();
    // syscall; inc rbx; jmp -5 (back to syscall)
    m.ram().write(0, &[0x0f, 0x05, 0x48, 0xff, 0xc3, 0xeb, 0xf9]).unwrap();
    let mut f = TrapFrame::new(0x1000, 0x2000);
    f.rax = 42;
    let t = cpu.run(&vms, &mut f);
    println!("{:?} {:x?}", t, f);
    f.rax = 7;
    let t = cpu.run(&vms, &mut f);
    println!("{:?} {:x?}", t, f);
    let n = 100000;
    let st = std::time::Instant::now();
    for _ in 0..n { cpu.run(&vms, &mut f).unwrap(); }
    println!("{:?} per syscall, rbx={} stats {:?}", st.elapsed() / n, f.rbx, cpu.stats());
    // page fault on data
    vms.mmap(0x10000, 0x10000, Backing::Linear { gpa: 0x10000, prot: Prot::RW }).unwrap();
    // mov [0x10008], rax ; syscall
    m.ram().write(0x100, &[0x48, 0x89, 0x04, 0x25, 0x08, 0x00, 0x01, 0x00, 0x0f, 0x05]).unwrap();
    let mut f = TrapFrame::new(0x1100, 0x2000);
    f.rax = 0x1234;
    let t = cpu.run(&vms, &mut f);
    println!("{:?} ram={:#x} stats {:?}", t, m.ram().load(0x10008).unwrap(), cpu.stats());
    // unmapped access
    let mut f = TrapFrame::new(0x5000, 0x2000);
    let t = cpu.run(&vms, &mut f);
    println!("{:?} {:x?}", t, f.rip);
}
