# subprocess with pass_fds and close_fds (issue 23): the child closes every
# other fd while it lists /proc/self/fd (close_range(3, 2) is EINVAL, so
# CPython falls back to the listing); no fd may survive but the kept one.
import os, subprocess, sys
fds = []
for i in range(4):
    r, w = os.pipe(); os.set_inheritable(r, True); os.set_inheritable(w, True); fds += [r, w]
keep = fds[0]
code = "import os; print(' '.join(x for x in os.listdir('/proc/self/fd')))"
out = subprocess.check_output([sys.executable, "-c", code], pass_fds=[keep], close_fds=True)
seen = {int(x) for x in out.split()}
# 0-2, the kept fd and the listing's own fd: nothing else survives.
print("kept fd seen", keep in seen)
print("others closed", len(seen - {0, 1, 2, keep}) <= 1, "of", len(fds) - 1)
