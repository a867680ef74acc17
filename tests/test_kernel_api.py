"""The public face of the syscall layer: default instance, tasks, Program/Link, CLI show."""

from __future__ import annotations

import errno
import json

from click.testing import CliRunner

import pybpf.kernel as kmod
from pybpf.cli.show import render
from pybpf.errors import BpfError
from pybpf.kernel import Cap, Kernel, default_kernel
from pybpf.program import Program
from pybpf.uapi import BPF_MAP_TYPE_ARRAY, BPF_PROG_TYPE_SOCKET_FILTER, BpfCmd, bpf_attr

RET7 = bytes.fromhex("b700000007000000" "9500000000000000")


def test_default_instance_and_module_bpf() -> None:
    assert default_kernel() is default_kernel()
    a = bpf_attr()
    a.map_type, a.key_size, a.value_size, a.max_entries = BPF_MAP_TYPE_ARRAY, 4, 4, 1
    fd = kmod.bpf(BpfCmd.BPF_MAP_CREATE, a)
    assert fd >= 3
    assert default_kernel().close(fd) == 0
    assert default_kernel().close(fd) == -errno.EBADF
    assert kmod.bpf(12345, bytes(8)) == -errno.EINVAL


def test_tasks_have_own_fds_and_creds() -> None:
    k = Kernel(sysctls={"bpf_jit_enable": 0, "unprivileged_bpf_disabled": 0})
    user = k.task(uid=1000)
    assert not user.cred.capable(Cap.CAP_BPF)
    p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET7, task=user)
    assert p.fd == 3 and k.root.fds.get(3) is None
    a = bpf_attr()
    assert user.bpf(BpfCmd.BPF_PROG_GET_NEXT_ID, a) == -errno.EPERM
    assert k.bpf(BpfCmd.BPF_PROG_GET_NEXT_ID, a) == 0 and a.next_id == p.obj.id
    with __import__("pytest").raises(BpfError) as exc:
        Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET7 * 2049, task=user)
    assert exc.value.errno == errno.E2BIG


def test_program_runs_and_reports(tmp_path: object) -> None:
    k = Kernel(sysctls={"bpf_jit_enable": 0})
    p = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, RET7, name="seven")
    assert p.obj.run(0) == 7
    assert p.name == "seven" and len(p.tag) == 16
    assert k.helpers is not default_kernel().helpers  # per-instance helper table
    out = render("prog", k)
    assert "socket_filter  name seven" in out and "not jited" in out
    rec = json.loads(render("prog", k, as_json=True))[0]
    assert rec["name"] == "seven" and rec["bytes_xlated"] == 16


def test_cli_show_commands() -> None:
    from pybpf.cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["btf", "show", "-j"])
    assert res.exit_code == 0, res.output
    assert isinstance(json.loads(res.output or "[]"), list)
    res = runner.invoke(cli, ["map", "show", "id", "999999"])
    assert res.exit_code != 0
    res = runner.invoke(cli, ["prog", "show", "bogus"])
    assert res.exit_code != 0


def test_test_run_returns_what_a_syscall_program_wrote_into_ctx_in() -> None:
    import struct

    from pybpf.isa.asm import assemble
    from pybpf.kernel import Kernel
    from pybpf.program import Program
    from pybpf.uapi import BPF_F_SLEEPABLE, BPF_PROG_TYPE_SYSCALL

    k = Kernel()
    prog = Program.load(k, BPF_PROG_TYPE_SYSCALL, assemble(
        "r2 = *(u32 *)(r1 + 0)\nr2 += 1\n*(u32 *)(r1 + 4) = r2\nr0 = 0\nexit\n"),
        prog_flags=BPF_F_SLEEPABLE)
    res = prog.test_run(ctx_in=struct.pack("<II", 41, 0), repeat=0)
    assert struct.unpack("<II", res.ctx_in) == (41, 42)


def test_trace_printk_output_is_readable_from_the_kernel_instance() -> None:
    from pybpf.isa.asm import assemble
    from pybpf.kernel import Kernel
    from pybpf.program import Program
    from pybpf.uapi import BPF_PROG_TYPE_SOCKET_FILTER

    k = Kernel(sysctls={"bpf_jit_enable": 0})
    # "hi %d\n" on the stack, then bpf_trace_printk(fmt, 7, 42)
    prog = Program.load(k, BPF_PROG_TYPE_SOCKET_FILTER, assemble(
        "r1 = 0x0a6425206968 ll\n*(u64 *)(r10 -8) = r1\nr1 = r10\nr1 += -8\nr2 = 7\n"
        "r3 = 42\ncall bpf_trace_printk#6\nr0 = 0\nexit\n"))
    prog.test_run(bytes(64))
    assert any(line.rstrip().endswith("hi 42") for line in k.trace_pipe), k.trace_pipe
