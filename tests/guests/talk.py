# Python programs that talk (issue 22): an asyncio Unix-socket echo server
# and client, asyncio.create_subprocess_exec, a threading socketserver on
# a Unix socket, selectors, multiprocessing.Pool and a datagram socketpair.
# Prints the same natively and under vkernel.
import asyncio, os, socket, socketserver, sys, tempfile, threading, selectors, multiprocessing

def sq(x):
    return x * x

async def echo_main(path):
    async def handle(r, w):
        data = await r.readline()
        w.write(data.upper())
        await w.drain()
        w.close()
    srv = await asyncio.start_unix_server(handle, path)
    async with srv:
        r, w = await asyncio.open_unix_connection(path)
        w.write(b"hello asyncio\n")
        await w.drain()
        print("asyncio echo:", (await r.readline()).decode().strip())
        w.close()
    p = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('child says hi')",
                                             stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    print("subprocess_exec:", out.decode().strip(), p.returncode)

class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline()[::-1])

def main():
    d = tempfile.mkdtemp()
    asyncio.run(echo_main(os.path.join(d, "a.sock")))
    p = os.path.join(d, "ss.sock")
    with socketserver.ThreadingUnixStreamServer(p, H) as s:
        t = threading.Thread(target=s.serve_forever); t.start()
        c = socket.socket(socket.AF_UNIX); c.connect(p); c.sendall(b"abc\n")
        print("socketserver:", c.recv(10)); c.close()
        s.shutdown(); t.join()
    sel = selectors.DefaultSelector()
    a, b = socket.socketpair()
    sel.register(b, selectors.EVENT_READ)
    a.send(b"x")
    print("selectors:", [k.fd == b.fileno() for k, _ in sel.select(1)])
    with multiprocessing.Pool(2) as pool:
        print("pool:", pool.map(sq, range(6)))
    u1, u2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    u1.send(b"dgram"); print("dgram:", u2.recv(100))

if __name__ == "__main__":
    main()
