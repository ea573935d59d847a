#!/usr/bin/python3
"""pinpty.py PIN CMD [ARG...]: runs CMD with a new pseudo-terminal as its
controlling tty, so that libfido2's tools (readpassphrase on /dev/tty) read
the PIN from it; answers every "Enter ... PIN ...: " prompt with PIN, copies
everything else CMD writes to stdout (without the tty's CRs) and exits with
CMD's exit code. A CMD still running after 90 s is killed (exit 124): a
guest test must fail, never hang. (busybox has no expect.)
"""
import os
import pty
import re
import select
import signal
import sys
import time

pin = sys.argv[1].encode()
argv = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)

out = b""
answered = 0
deadline = time.time() + 90
while True:
    if time.time() > deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.stdout.write("\npinpty: %s still running after 90 s, killed\n" % argv[0])
        sys.exit(124)
    r, _, _ = select.select([fd], [], [], 1)
    if fd not in r:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:  # EIO: the child closed its side
        break
    if not data:
        break
    out += data
    sys.stdout.buffer.write(data.replace(b"\r", b""))
    sys.stdout.flush()
    # readpassphrase flushes pending input when it turns echo off, then
    # writes its prompt: answer only prompts already shown.
    while answered < len(re.findall(rb"Enter [^\n]*PIN[^\n]*: ", out)):
        os.write(fd, pin + b"\n")
        answered += 1
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
