# os.forkpty as pty.spawn uses it (issue 23): the child on its terminal,
# the parent reading the master until EIO, then the child's status.
import os

pid, fd = os.forkpty()
if pid == 0:
    print('child', os.ttyname(0).startswith('/dev/pts/'), os.getsid(0) == os.getpid(),
          os.tcgetpgrp(0) == os.getpgrp(), flush=True)
    os._exit(3)
out = b''
while True:
    try:
        d = os.read(fd, 100)
    except OSError as e:
        print('errno', e.errno)
        break
    if not d:
        break
    out += d
print(out, os.waitpid(pid, 0)[1] >> 8)
