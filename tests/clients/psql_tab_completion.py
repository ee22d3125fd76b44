"""Types partial lines into an interactive psql (on a pseudo-terminal, so readline completes
them) and prints, per line, what psql echoed after two TABs, one per output line.

Usage: psql_tab_completion.py PORT LINE...
"""
import os
import pty
import select
import sys
import time


def drain(fd, seconds):
    """Everything psql writes within `seconds`."""
    out = b""
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def main():
    port, lines = sys.argv[1], sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["PSQL_HISTORY"] = "/dev/null"
        os.environ["PAGER"] = "cat"
        os.execvp("psql", ["psql", "-X", "-h", "127.0.0.1", "-p", port, "-U", "weir", "weir"])
    drain(fd, 1.5)
    for line in lines:
        os.write(fd, line.encode() + b"\t\t")
        echoed = drain(fd, 1.5).decode(errors="replace")
        # Ctrl-C abandons the line; psql prints a fresh prompt.
        os.write(fd, b"\x03")
        drain(fd, 0.5)
        print(echoed.replace("\r", "").replace("\n", " ").replace("\x07", ""))
    os.write(fd, b"\\q\n")
    drain(fd, 0.5)
    os.waitpid(pid, 0)


main()
