"""Probe of the tap network from inside a vproc (tests/linux_tap.rs).

argv: the host side's address, its HTTP port, its UDP echo port, a port
nobody listens on. Prints one line per check; exits non-zero on a failure.
"""
import errno
import hashlib
import select
import socket
import sys
import urllib.request

host, http_port, udp_port, closed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

# A port nobody listens on: refused, and the socket can connect again.
s = socket.socket()
try:
    s.connect((host, closed))
    print("closed port: connected?!")
except ConnectionRefusedError:
    print("closed port: refused")
s.close()

# Non-blocking connect: EINPROGRESS, writable, SO_ERROR 0, then names.
s = socket.socket()
s.setblocking(False)
rc = s.connect_ex((host, http_port))
print("nonblocking connect:", errno.errorcode.get(rc, rc))
_, w, _ = select.select([], [s], [], 10)
print("writable:", bool(w), "SO_ERROR:", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
print("peer:", s.getpeername() == (host, http_port), "own port > 0:", s.getsockname()[1] > 0)
s.close()

# Non-blocking connect to the closed port: the error comes through SO_ERROR.
s = socket.socket()
s.setblocking(False)
s.connect_ex((host, closed))
select.select([], [s], [], 10)
print("refused via SO_ERROR:", errno.errorcode.get(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
s.close()

# HTTP from the host side's server.
body = urllib.request.urlopen(f"http://{host}:{http_port}/blob", timeout=20).read()
print("fetched:", len(body), hashlib.sha256(body).hexdigest()[:16])

# UDP: an echo from the host side, unconnected and connected.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"ping one", (host, udp_port))
data, frm = u.recvfrom(100)
print("udp echo:", data, frm == (host, udp_port))
u.connect((host, udp_port))
u.send(b"ping two")
print("udp connected echo:", u.recv(100))
u.close()

# Half-close: 2 MiB out, FIN, the host side's echo of all of it, its FIN.
s = socket.create_connection((host, udp_port - 1), timeout=20)
want = bytes(range(256)) * 8192
s.sendall(want)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    got += b
print("half-close echo:", len(got), got == want)
s.close()

print("resolv.conf:", open("/etc/resolv.conf").read().split())
