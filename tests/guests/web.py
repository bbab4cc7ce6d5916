# Programs that talk over 127.0.0.1 (issue 24): `python3 -m http.server`
# in one process and urllib in another, a socketserver TCP echo, asyncio
# TCP streams and a UDP round trip. Prints the same natively and under
# vkernel.
import asyncio, os, re, socket, socketserver, subprocess, sys, tempfile, threading, urllib.request

def http_server():
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "hello.txt"), "w") as f:
        f.write("hello over loopback\n")
    p = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                          "--directory", d], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    port = int(re.search(r"port (\d+)", line).group(1))
    body = urllib.request.urlopen("http://127.0.0.1:%d/hello.txt" % port, timeout=30).read()
    print("http.server:", body.decode().strip())
    p.terminate()
    p.wait()

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline().upper())

def tcp_server():
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as s:
        t = threading.Thread(target=s.serve_forever)
        t.start()
        with socket.create_connection(s.server_address, timeout=30) as c:
            c.sendall(b"tcp echo\n")
            print("socketserver:", c.makefile().readline().strip())
        s.shutdown()
        t.join()

async def streams():
    async def handle(r, w):
        w.write((await r.readline()).strip()[::-1] + b"\n")
        await w.drain()
        w.close()
    srv = await asyncio.start_server(handle, "::1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        r, w = await asyncio.open_connection("::1", port)
        w.write(b"asyncio v6\n")
        print("asyncio:", (await r.readline()).strip())
        w.close()

def udp():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b.sendto(b"ping", a.getsockname())
    data, addr = a.recvfrom(100)
    a.sendto(data + b"-pong", addr)
    print("udp:", b.recv(100), addr[0])

http_server()
tcp_server()
asyncio.run(streams())
udp()
print("localhost:", socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4])
