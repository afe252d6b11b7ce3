"""
The rotation watcher under a seccomp filter that kills the process on a
system call it does not allow, as systemd's C{SystemCallFilter=~@resources}
does (C{systemd-analyze security} recommends it; without
C{SystemCallErrorNumber=} the process gets SIGSYS): the watcher's thread
asks Linux for a short time slice with C{sched_setattr}, which is in
C{@resources}. Under a filter it must not ask (it cannot know whether
the filter kills), and the process must live and its writers be watched.
A real filter, installed with C{prctl} in a child interpreter.
"""

from __future__ import annotations

import platform
import textwrap
from pathlib import Path

import pytest

from .helpers import CHILD_HELPERS, childResult

#: sched_setattr's number and the audit architecture, per machine.
ARCHITECTURES = {"x86_64": (314, 0xC000003E), "aarch64": (274, 0xC00000B7)}

CHILD = CHILD_HELPERS + textwrap.dedent(
    """
    import ctypes, json, os, sys, time
    from twisted_safelog import LogFileWriter, Reporter
    from twisted_safelog._rotationwatch import rotationWatcher

    number, arch = int(sys.argv[2]), int(sys.argv[3])

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8),
                    ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    LOAD, JUMP_EQUAL, RETURN = 0x20, 0x15, 0x06
    KILL_PROCESS, ALLOW = 0x80000000, 0x7FFF0000
    code = (Instruction * 6)(
        Instruction(LOAD, 0, 0, 4),              # seccomp_data.arch
        Instruction(JUMP_EQUAL, 0, 3, arch),
        Instruction(LOAD, 0, 0, 0),              # seccomp_data.nr
        Instruction(JUMP_EQUAL, 0, 1, number),
        Instruction(RETURN, 0, 0, KILL_PROCESS),
        Instruction(RETURN, 0, 0, ALLOW),
    )
    program = Program(6, code)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(program), 0, 0) == 0, ctypes.get_errno()

    path = os.path.join(sys.argv[1], "app.log")
    writer = LogFileWriter(path, reporter=Reporter(write=lambda line: None),
                           checkInterval=3600.0, checkEvery=10**9)
    writer.write("before\\n")
    found = {"running": waitFor(lambda: rotationWatcher.running),
             "watched": rotationWatcher.watches(writer)}
    found["noticed"] = noticed(writer, path, path + ".1")
    print(json.dumps(found))
    """
)


def test_aSeccompFilterThatKillsOnSchedSetattrLeavesTheProcessAlive(tmp_path: Path) -> None:
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        pytest.skip(f"no seccomp filter written for {machine}")
    number, arch = ARCHITECTURES[machine]
    found = childResult(CHILD, str(tmp_path), str(number), str(arch))
    assert found == {"running": True, "watched": True, "noticed": True}
