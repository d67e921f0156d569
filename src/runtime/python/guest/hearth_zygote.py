"""The Python fork server ("zygote", as in SOCK, USENIX ATC'18): a host-side process that has imported the
guest once and forks a copy of itself into each fresh sandbox, instead of each sandbox booting Python.

Started by the platform (root, outside any sandbox, niced like the functions, with the guest's environment),
with its settings and then its requests on fd 3: one JSON object a line, answered by one line. A request names a sandbox that
bubblewrap has just made with its walls (mount, pid, ipc, uts, net and cgroup namespaces, the cgroup, the
read-only root, /code, the size-capped /tmp, seccomp, the dropped uid) and in which a placeholder shell
(`hearth-zygote-hold`) waits. The zygote forks a child into that sandbox's pid namespace; the child takes
the placeholder's stdout, stderr and fd 3, joins its cgroup and namespaces (the mount namespace last, which
sets its root to the sandbox's), and then drops to the sandbox's uid with no capabilities, no new
privileges and the same seccomp filter before any of the guest's code that reads input runs. The
placeholder stays the sandbox's first process: when the child ends, the zygote writes its exit status to
the placeholder, which exits with it, and bubblewrap with it; if the zygote dies, the placeholder reads
end-of-file and ends the sandbox likewise.

Hand-written (no library forks into another process's namespaces): Python 3.11's os has no setns, so it
is called through ctypes, as are pidfd_getfd, capset and the seccomp prctl.
"""

import ctypes
import gc
import json
import os
import selectors
import signal
import socket
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
SYS_PIDFD_GETFD = 438
LINUX_CAPABILITY_VERSION_3 = 0x20080522
GUEST_DIR = "/hearth/guest"
HOLD_MARK = b"hearth-zygote-hold"

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def check(result, what):
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def setns(fd, kind, what):
    check(libc.setns(fd, kind), f"setns({what})")


def take_fd(pidfd, fd):
    return check(libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0), f"pidfd_getfd({fd})")


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def load_guest(host_dir):
    """Imports the guest as the sandbox names it (/hearth/guest/...), so that nothing in the forked copy
    (module files, tracebacks) names where the platform keeps its copy on the host."""
    import types

    for name in ("hearth_adapters", "hearth_guest"):
        with open(os.path.join(host_dir, name + ".py"), "rb") as handle:
            source = handle.read()
        module = types.ModuleType(name)
        module.__file__ = f"{GUEST_DIR}/{name}.py"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(part) for part in handle.read().split()]
    except OSError:
        return []


def find_hold(sandbox):
    """The placeholder: bubblewrap's child (the namespace's pid 1) has it as its child."""
    for init in children_of(sandbox):
        for child in children_of(init):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as handle:
                    # sh -c SCRIPT hearth-zygote-hold GUEST...: the mark is its $0, the guest's command follows.
                    words = handle.read().split(b"\0")
                    if len(words) > 3 and words[3] == HOLD_MARK:
                        return child
            except OSError:
                pass
    raise OSError(f"no placeholder in sandbox {sandbox}")


class Zygote:
    def __init__(self, control, seccomp_program, uid, gid):
        self.control = control
        self.seccomp_program = seccomp_program
        self.uid = uid
        self.gid = gid
        self.own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.holds = {}
        self.buffer = b""
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            self.last_cap = int(handle.read())

    def serve(self):
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        signal.set_wakeup_fd(writer.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ, "control")
        selector.register(reader, selectors.EVENT_READ, "child")
        self.drain()
        while True:
            for key, _ in selector.select():
                if key.data == "child":
                    try:
                        reader.recv(4096)
                    except BlockingIOError:
                        pass
                    self.reap()
                else:
                    data = self.control.recv(65536)
                    if not data:
                        return
                    self.buffer += data
                    self.drain()

    def drain(self):
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.answer(json.loads(line))

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            hold = self.holds.pop(pid, None)
            if hold is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                os.write(hold, f"{code if code >= 0 else 128 - code}\n".encode())
            except OSError:
                pass
            os.close(hold)

    def answer(self, request):
        reply = {"id": request["id"]}
        try:
            reply["pid"] = self.fork_into(request)
            reply["ok"] = True
        except Exception as error:  # noqa: BLE001 - the platform discards the cell and says why
            reply["ok"] = False
            reply["error"] = str(error)
        self.control.sendall(json.dumps(reply).encode() + b"\n")

    def fork_into(self, request):
        hold_pid = find_hold(request["sandbox"])
        pidfd = os.pidfd_open(hold_pid)
        namespaces = []
        hold = -1
        try:
            parent = os.pidfd_open(os.getppid())
            try:
                hold = take_fd(parent, request["holdFd"])
            finally:
                os.close(parent)
            for name, kind in (
                ("net", CLONE_NEWNET),
                ("ipc", CLONE_NEWIPC),
                ("uts", CLONE_NEWUTS),
                ("cgroup", CLONE_NEWCGROUP),
                ("mnt", CLONE_NEWNS),
            ):
                namespaces.append((os.open(f"/proc/{hold_pid}/ns/{name}", os.O_RDONLY), kind, name))
            pid_ns = os.open(f"/proc/{hold_pid}/ns/pid", os.O_RDONLY)
            try:
                # Children forked from now on are born in the sandbox's pid namespace; the zygote is not.
                setns(pid_ns, CLONE_NEWPID, "pid")
            finally:
                os.close(pid_ns)
            pid = -1
            try:
                pid = os.fork()
            finally:
                if pid != 0:
                    setns(self.own_pid_ns, CLONE_NEWPID, "pid back")
            if pid == 0:
                self.become_guest(pidfd, namespaces, request)
            self.holds[pid] = hold
            hold = -1
            return pid
        finally:
            os.close(pidfd)
            for fd, _, _ in namespaces:
                os.close(fd)
            if hold >= 0:
                os.close(hold)

    def become_guest(self, pidfd, namespaces, request):
        """In the forked child: everything up to the guest's main loop; any failure ends it."""
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
            stdio = [take_fd(pidfd, fd) for fd in (1, 2, 3)]
            for directory in request["cgroups"]:
                with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
                    handle.write("0")
            for fd, kind, name in namespaces:
                setns(fd, kind, name)
            os.setsid()
            os.chdir("/tmp")
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            for target, fd in zip((1, 2, 3), stdio):
                os.dup2(fd, target)
            os.closerange(4, 1 << 20)
            self.drop_privileges()
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [f"{GUEST_DIR}/bootstrap.py"]
        except BaseException as error:  # noqa: BLE001 - the sandbox must never run half-walled
            try:
                os.write(2, f"hearth zygote: {error}\n".encode())
            finally:
                os._exit(125)
        # Its copy of the server's objects made its own now, while it is a stem cell nobody waits for, not
        # page by page at the bind and first invocation a client waits on (each first write to a shared
        # page is a copy; the collector's walk writes every object's header).
        gc.unfreeze()
        gc.collect()
        guest = sys.modules["hearth_guest"]
        # The module's channel wrapped the zygote's fd 3; it is now the sandbox's.
        guest.channel.detach()
        guest.channel = socket.socket(fileno=3)
        try:
            guest.main()
        except SystemExit as end:
            code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
            sys.stdout.flush()
            os._exit(code)
        except BaseException:  # noqa: BLE001 - as an uncaught exception ends a script
            import traceback

            traceback.print_exc()
            os._exit(1)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(0)

    def drop_privileges(self):
        """What setpriv does for a bubblewrap sandbox: the uid, no groups, no capabilities (bounding,
        ambient, inheritable), no new privileges; then the seccomp filter, as bubblewrap loads it."""
        for cap in range(self.last_cap + 1):
            check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP")
        check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "PR_CAP_AMBIENT")
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        # A change of uid clears the parent-death signal set at the fork: set it again.
        check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
        header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
        data = (CapData * 2)()
        check(libc.capset(ctypes.byref(header), data), "capset")
        # Changing uid made it undumpable (its /proc/self owned by root, unreadable to it), which a guest
        # exec'd as that uid is not.
        check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "PR_SET_DUMPABLE")
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        program = self.seccomp_program
        filters = (SockFilter * (len(program) // 8)).from_buffer_copy(program)
        fprog = SockFprog(len(filters), filters)
        check(
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
            "PR_SET_SECCOMP",
        )


def main():
    # Its settings come as the control channel's first line, not in its environment or command line,
    # which a forked guest could read back (/proc/self/environ and cmdline keep what exec was given): the
    # platform starts it with the guest's own environment and its source on stdin.
    control = socket.socket(fileno=os.dup(3))
    line = b""
    while not line.endswith(b"\n"):
        chunk = control.recv(4096)
        if not chunk:
            return
        line += chunk
    first, rest = line.split(b"\n", 1)
    settings = json.loads(first)
    with open(settings["seccompFile"], "rb") as handle:
        program = handle.read()
    # The guest's module-level code wraps fd 3 (the control channel here) as its channel.
    load_guest(settings["guestDir"])
    zygote = Zygote(control, program, settings["uid"], settings["gid"])
    # What the guests inherit is never collected by them: the collector then neither walks it (a walk
    # writes every object's header, copying each shared page into each guest) nor counts it.
    gc.collect()
    gc.freeze()
    zygote.buffer = rest
    del line, first, settings
    zygote.serve()


if __name__ == "__main__":
    main()
