"""Container start inside a private mount namespace (standard library only).

The node agent starts every container as
``unshare --mount --propagation private -- python -I -S sandbox.py PLAN.json``. This
program then, still as root and in the new namespace:

1. bind-mounts each volume at its mountPath (read-only where requested), creating missing
   mountpoints, so container paths resolve as written;
2. puts a fresh tmpfs over ``/dev`` holding the usual device nodes (bound from the host)
   when the termination message path lies in ``/dev``, because a mountpoint file such as
   ``/dev/termination-log`` must not be created in the host's shared devtmpfs;
3. bind-mounts the container's own termination message file at its path;
4. changes to the working directory, drops to runAsUser/runAsGroup, sets the parent-death signal so the
   kernel kills the process when the node agent dies, and executes the command with the container's
   environment (PATH lookup uses the container's PATH).

It executes in place, so the container process keeps the PID the agent started. A start
failure writes a message to the plan's ``startErrorFile`` and exits with code 128, which
the agent reports as reason StartError.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
PR_SET_PDEATHSIG = 1
START_ERROR_EXIT_CODE = 128

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

DEVICE_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEVICE_DIRECTORIES = ("pts", "shm", "mqueue")
DEVICE_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target} failed: {os.strerror(errno)}")


# NOTE: a mountpoint missing on the host is created there (an empty directory or file)
# and left in place, because other containers may be using it.
def ensure_mountpoint(target: str, source_is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    if source_is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def open_path(path: str) -> int:
    """Open a handle on a path before any mount can hide it.

    Sources are mounted through ``/proc/self/fd/N`` afterwards, because an earlier volume
    (an emptyDir at /tmp, say) may cover the host directory where later sources live.
    """
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def bind(source_fd: int, target: str, read_only: bool) -> None:
    ensure_mountpoint(target, stat.S_ISDIR(os.fstat(source_fd).st_mode))
    mount(fd_path(source_fd), target, None, MS_BIND | MS_REC)
    if read_only:
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)


def replace_dev(scratch: str) -> None:
    """Mount a tmpfs with the usual device nodes over /dev."""
    os.makedirs(scratch, exist_ok=True)
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID, "mode=755")
    for name in DEVICE_NODES:
        if os.path.exists(f"/dev/{name}"):
            with open(f"{scratch}/{name}", "a"):
                pass
            mount(f"/dev/{name}", f"{scratch}/{name}", None, MS_BIND)
    for name in DEVICE_DIRECTORIES:
        if os.path.isdir(f"/dev/{name}"):
            os.mkdir(f"{scratch}/{name}")
            mount(f"/dev/{name}", f"{scratch}/{name}", None, MS_BIND | MS_REC)
    for name, link in DEVICE_LINKS.items():
        os.symlink(link, f"{scratch}/{name}")
    mount(scratch, "/dev", None, MS_MOVE)


def find_executable(name: str, path: str) -> str:
    """Resolve ``name`` through the container's PATH, before privileges are dropped.

    The lookup runs as root because the interpreter may not be able to load modules from
    its own installation once it runs as the container user.
    """
    if "/" in name:
        return name
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o111:
            return candidate
    raise StartError(f'exec: "{name}": executable file not found in $PATH')


class StartError(Exception):
    """The container command cannot be started."""


def drop_privileges(plan: dict) -> None:
    uid = plan.get("uid")
    gid = plan.get("gid")
    if uid is None and gid is None:
        return
    if gid is None:
        gid = uid
    os.setgroups([int(g) for g in plan.get("supplementalGroups") or []])
    os.setgid(int(gid))
    if uid is not None:
        os.setuid(int(uid))


def toolchain_paths(plan: dict) -> list[str]:
    """Return the plan's host directories to keep visible; plans of older agents name one."""
    if plan.get("toolchains"):
        return list(plan["toolchains"])
    return [plan["toolchain"]] if plan.get("toolchain") else []


def hidden_toolchains(plan: dict) -> list[str]:
    """Return the listed host directories that live under the private /root, outermost only."""
    listed = sorted({path for path in toolchain_paths(plan) if os.path.isdir(path)})
    outermost = [path for path in listed if not any(path.startswith(other + "/") for other in listed)]
    return [path for path in outermost if path.startswith("/root/")]


def expose_toolchain(plan: dict, handles: dict[str, int]) -> None:
    """Let a non-root container use the host Python and the repository under the private /root.

    /root is mode 0700 on the development machines, so a container running as another
    user could not start the project's virtual environment. Inside the namespace only,
    an empty tmpfs replaces /root and each listed directory under it is bound back.
    """
    hidden = hidden_toolchains(plan)
    if not hidden or plan.get("uid") in (None, 0):
        return
    mount("tmpfs", "/root", "tmpfs", MS_NOSUID, "mode=755")
    for path in hidden:
        os.makedirs(path)
        mount(fd_path(handles[path]), path, None, MS_BIND | MS_REC)


def restore_covered_toolchains(plan: dict, handles: dict[str, int]) -> None:
    """Bind listed directories back where a volume's mountPath (e.g. /tmp) now covers them."""
    targets = [item["target"].rstrip("/") for item in plan.get("mounts") or []]
    for path, fd in handles.items():
        if any(path.startswith(target + "/") for target in targets):
            os.makedirs(path, exist_ok=True)
            mount(fd_path(fd), path, None, MS_BIND | MS_REC)


def start(plan: dict) -> None:
    toolchains = sorted({path for path in toolchain_paths(plan) if os.path.isdir(path)})
    handles = {path: open_path(path) for path in toolchains}
    sources = [open_path(item["source"]) for item in plan.get("mounts") or []]
    message = plan.get("terminationMessage")
    message_fd = open_path(message["hostFile"]) if message else None

    expose_toolchain(plan, handles)
    for item, source_fd in zip(plan.get("mounts") or [], sources):
        bind(source_fd, item["target"], False)
    restore_covered_toolchains(plan, handles)
    if message:
        if message["path"].startswith("/dev/"):
            replace_dev(plan["devScratch"])
        bind(message_fd, message["path"], False)
    # Read-only remounts come last so that mountpoints inside a read-only volume can be created.
    for item in plan.get("mounts") or []:
        if item["readOnly"]:
            mount(None, item["target"], None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)

    working_dir = plan.get("workingDir") or "/"
    os.makedirs(working_dir, exist_ok=True)
    os.chdir(working_dir)

    argv = plan["argv"]
    if not argv:
        raise StartError("the container has no command: its image entry has no entrypoint or cmd and the container sets no command")
    executable = find_executable(argv[0], plan["env"].get("PATH", ""))

    drop_privileges(plan)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        raise StartError("the node agent exited before the container started")
    os.execve(executable, argv, plan["env"])


def main() -> None:
    with open(sys.argv[1]) as stream:
        plan = json.load(stream)
    # Opened before any mount, which could cover the directory it lives in.
    error_file = open(plan["startErrorFile"], "w")
    os.set_inheritable(error_file.fileno(), False)
    try:
        start(plan)
    except (OSError, StartError) as error:
        text = f"failed to start container: {error}"
        error_file.write(text)
        error_file.close()
        print(text, file=sys.stderr)
        sys.exit(START_ERROR_EXIT_CODE)


if __name__ == "__main__":
    main()
