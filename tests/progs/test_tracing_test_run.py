"""BPF_PROG_TEST_RUN for TRACING programs (``bpf_prog_test_run_tracing``) and the
trampolines on host functions it calls through (fentry, fexit, fmod_ret)."""

from __future__ import annotations

import ctypes
import errno
import os
from types import ModuleType

import pytest

from pybpf.errors import BpfError
from pybpf.hooks.trampoline import host_functions, register_host_function
from pybpf.isa.asm import assemble
from pybpf.isa.insn import encode
from pybpf.kernel import Kernel
from pybpf.link import Link
from pybpf.program import Program
from pybpf.uapi import BpfAttachType, BpfCmd, BpfLinkType, bpf_attr, bpf_link_info

FENTRY, FEXIT, FMOD_RET = 24, 25, 26
TRACING = 26
BPF_MAP_TYPE_ARRAY = 2


@pytest.fixture(scope="module")
def kern() -> Kernel:
    return Kernel()


def _array(k: Kernel, n: int = 4) -> int:
    return int(k.map_create(BPF_MAP_TYPE_ARRAY, 4, 8, n).fd)


def _store_ctx_slot(map_fd: int, slot: int, key: int = 0) -> str:
    """A program storing ctx[slot] (u64) into array[key]; returns 0."""
    return f"""
        r6 = *(u64 *)(r1 + {8 * slot})
        *(u32 *)(r10 - 4) = {key}
        r2 = r10
        r2 += -4
        r1 = pseudo[1]:{map_fd}
        call 1
        if r0 == 0 goto +1
        *(u64 *)(r0 + 0) = r6
        r0 = 0
        exit"""


def _load(k: Kernel, text: str, eat: int, target: str, ids: dict[str, int]) -> Program:
    return Program.load(k, TRACING, assemble(text, syntax="kernel"), expected_attach_type=eat,
                        attach_btf_id=ids[target])


def _lookup(k: Kernel, map_fd: int, key: int = 0) -> int:
    from pybpf.core.map import MapHandle

    h = MapHandle(k.root, map_fd)
    return int.from_bytes(h.lookup(key.to_bytes(4, "little")), "little")


def test_fentry_runs_only_when_attached(kern: Kernel, btf_ids: dict[str, int]) -> None:
    m = _array(kern)
    prog = _load(kern, _store_ctx_slot(m, 0), FENTRY, "bpf_fentry_test1", btf_ids)
    assert prog.test_run().retval == 0
    assert _lookup(kern, m) == 0  # not attached: nothing ran
    link = prog.attach_trace()
    try:
        assert prog.test_run().retval == 0
        assert _lookup(kern, m) == 1  # bpf_fentry_test1(1)
    finally:
        link.close()


def test_fexit_sees_the_return_value(kern: Kernel, btf_ids: dict[str, int]) -> None:
    m = _array(kern)
    prog = _load(kern, _store_ctx_slot(m, 3), FEXIT, "bpf_fentry_test3", btf_ids)
    with prog.attach_trace():
        assert prog.test_run().retval == 0
    assert _lookup(kern, m) == 15  # bpf_fentry_test3(4, 5, 6) returned 15


@pytest.mark.parametrize(("target", "r0", "want"), [
    ("bpf_modify_return_test", 0, (2 << 16) | 33),   # nothing modified: 4 + 29
    ("bpf_modify_return_test", 7, (1 << 16) | 36),   # first call skipped: 7 + 29
    ("bpf_modify_return_test2", 100, (1 << 16) | 104),  # 4 + 100
    ("bpf_modify_return_test2", 0x10005, (1 << 16) | 9),  # the u16 sum wraps
])
def test_fmod_ret_retval(kern: Kernel, btf_ids: dict[str, int], target: str, r0: int,
                         want: int) -> None:
    prog = _load(kern, f"r0 = {r0}\nexit", FMOD_RET, target, btf_ids)
    assert prog.test_run().retval == (2 << 16) | 33  # not attached yet
    with prog.attach_trace():
        assert prog.test_run().retval == want


def test_fmod_ret_on_a_fentry_test_function_breaks_fentry_runs(
        kern: Kernel, btf_ids: dict[str, int]) -> None:
    fmod = _load(kern, "r0 = 5\nexit", FMOD_RET, "bpf_fentry_test1", btf_ids)
    fentry = _load(kern, "r0 = 0\nexit", FENTRY, "bpf_fentry_test2", btf_ids)
    with fmod.attach_trace():
        with pytest.raises(BpfError) as exc:
            fentry.test_run()
        assert exc.value.errno == errno.EFAULT  # bpf_fentry_test1(1) != 2
    assert fentry.test_run().retval == 0


def test_fexit_after_fmod_ret_sees_the_modified_value(kern: Kernel,
                                                     btf_ids: dict[str, int]) -> None:
    m = _array(kern)
    fmod = _load(kern, "r0 = 40\nexit", FMOD_RET, "bpf_modify_return_test", btf_ids)
    fexit = _load(kern, _store_ctx_slot(m, 2), FEXIT, "bpf_modify_return_test", btf_ids)
    with fmod.attach_trace(), fexit.attach_trace():
        assert fmod.test_run().retval == (1 << 16) | 69
    assert _lookup(kern, m) == 40


def test_test_run_attr_rules(kern: Kernel, btf_ids: dict[str, int]) -> None:
    prog = _load(kern, "r0 = 0\nexit", FENTRY, "bpf_fentry_test1", btf_ids)
    for kw in ({"flags": 1}, {"cpu": 1}, {"batch_size": 1}):
        with pytest.raises(BpfError) as exc:
            prog.test_run(**kw)  # type: ignore[arg-type]
        assert exc.value.errno == errno.EINVAL
    # data, ctx and repeat are ignored
    res = prog.test_run(b"x" * 20, ctx_in=b"y" * 8, repeat=10)
    assert res.retval == 0 and res.duration == 0
    assert res.data_out == bytes(len(res.data_out))  # nothing written back


def test_other_tracing_attach_types_fault() -> None:
    """tp_btf and iterator programs: ``goto out`` with EFAULT (checked on the runner: they
    need targets pybpf cannot load yet)."""
    from pybpf.progs.ops import TestRunOpts
    from pybpf.progs.testrun_tracing import test_run_tracing

    class _Prog:
        expected_attach_type = int(BpfAttachType.BPF_TRACE_ITER)

    assert test_run_tracing(_Prog(), Kernel(), TestRunOpts()).errno == errno.EFAULT


def test_link_rules_and_info(kern: Kernel, btf_ids: dict[str, int]) -> None:
    prog = _load(kern, "r0 = 0\nexit", FENTRY, "bpf_fentry_test5", btf_ids)
    link = prog.attach_trace(cookie=0x1234)
    try:
        with pytest.raises(BpfError) as exc:
            prog.attach_trace()
        assert exc.value.errno == errno.EBUSY
        # BPF_RAW_TRACEPOINT_OPEN with a name is refused for tracing programs
        with pytest.raises(BpfError) as exc:
            Link.raw_tracepoint(prog, "sys_enter")
        assert exc.value.errno == errno.EINVAL
        info = bpf_link_info()
        attr = bpf_attr()
        attr.info.bpf_fd, attr.info.info_len = link.fd, ctypes.sizeof(info)
        attr.info.info = ctypes.addressof(info)
        assert kern.bpf(BpfCmd.BPF_OBJ_GET_INFO_BY_FD, attr) == 0
        assert info.type == BpfLinkType.BPF_LINK_TYPE_TRACING
        assert info.tracing.attach_type == FENTRY
        assert info.tracing.target_btf_id == btf_ids["bpf_fentry_test5"]
        assert info.tracing.target_obj_id == kern.vmlinux_btf.id  # type: ignore[union-attr]
        assert info.tracing.cookie == 0x1234
        link.detach()
        assert not host_functions(kern)["bpf_fentry_test5"].fentry
    finally:
        link.close()


def test_raw_tracepoint_open_without_name_attaches(kern: Kernel,
                                                   btf_ids: dict[str, int]) -> None:
    m = _array(kern)
    prog = _load(kern, _store_ctx_slot(m, 0), FENTRY, "bpf_fentry_test2", btf_ids)
    attr = bpf_attr()
    attr.raw_tracepoint.prog_fd = prog.fd
    fd = kern.bpf(BpfCmd.BPF_RAW_TRACEPOINT_OPEN, attr)
    assert fd >= 0
    prog.test_run()
    assert _lookup(kern, m) == 2
    kern.close(fd)
    assert not host_functions(kern)["bpf_fentry_test2"].fentry


def test_host_function_of_the_host(kern: Kernel) -> None:
    fn = register_host_function(kern, "my_handler", lambda a, b: a * b, 2)
    assert fn(6, 7) == 42 and fn.calls == 1
    with pytest.raises(BpfError):
        register_host_function(kern, "my_handler", lambda a: a, 1)
    with pytest.raises(TypeError):
        fn(1)


# ------------------------------------------------------------------------ the live kernel
def _kernel_tracing(kernel: ModuleType, ids: dict[str, int], text: str, eat: int,
                    target: str) -> int:
    r = kernel.prog_load(TRACING, encode(assemble(text, syntax="kernel")),
                         expected_attach_type=eat, attach_btf_id=ids[target])
    if r.errno == errno.EPERM:
        pytest.skip("the live kernel refuses TRACING programs here (EPERM: no trampolines "
                    "for this sandbox); pybpf results are checked against test_run.c above")
    assert r.errno == 0, r
    return int(r.fd)


@pytest.mark.parametrize(("target", "eat", "r0"), [
    ("bpf_fentry_test1", FENTRY, 0), ("bpf_fentry_test1", FEXIT, 0),
    ("bpf_modify_return_test", FMOD_RET, 0), ("bpf_modify_return_test", FMOD_RET, 7),
    ("bpf_modify_return_test2", FMOD_RET, 100),
])
def test_tracing_test_run_vs_kernel(kernel: ModuleType, kern: Kernel, btf_ids: dict[str, int],
                                    target: str, eat: int, r0: int) -> None:
    text = f"r0 = {r0}\nexit"
    fd = _kernel_tracing(kernel, btf_ids, text, eat, target)
    try:
        before = kernel.prog_test_run(fd, repeat=0)
        attr = bpf_attr()
        attr.link_create.prog_fd, attr.link_create.attach_type = fd, eat
        lfd, err = kernel.sys_bpf(BpfCmd.BPF_LINK_CREATE, attr)
        assert err == 0
        after = kernel.prog_test_run(fd, repeat=0)
        os.close(lfd)
    finally:
        os.close(fd)
    prog = _load(kern, text, eat, target, btf_ids)
    assert prog.test_run().retval == before.retval
    with prog.attach_trace():
        assert prog.test_run().retval == after.retval


@pytest.mark.parametrize(("eat", "target", "access", "ok"), [
    (FENTRY, "bpf_fentry_test1", "r0 = *(u64 *)(r1 + 0)", True),
    (FENTRY, "bpf_fentry_test1", "r0 = *(u64 *)(r1 + 8)", False),   # no 2nd argument
    (FEXIT, "bpf_fentry_test1", "r0 = *(u64 *)(r1 + 8)", True),     # the return value
    (FEXIT, "bpf_fentry_test1", "r0 = *(u64 *)(r1 + 16)", False),
    (FMOD_RET, "bpf_modify_return_test", "r0 = *(u64 *)(r1 + 16)", True),
    (FENTRY, "bpf_fentry_test2", "r0 = *(u32 *)(r1 + 4)", False),  # not a multiple of 8
    (FENTRY, "bpf_fentry_test6", "r0 = *(u64 *)(r1 + 40)", True),
    (FENTRY, "bpf_fentry_test1", "*(u64 *)(r1 + 0) = r1", False),  # read-only
])
def test_ctx_is_the_target_arguments(kern: Kernel, btf_ids: dict[str, int], eat: int,
                                     target: str, access: str, ok: bool) -> None:
    text = f"{access}\nr0 = 0\nexit"
    if ok:
        _load(kern, text, eat, target, btf_ids).close()
        return
    with pytest.raises(BpfError) as exc:
        _load(kern, text, eat, target, btf_ids)
    assert exc.value.errno == errno.EACCES


def test_fentry_on_a_kernel_function_the_host_simulates(kern: Kernel) -> None:
    """Any vmlinux function can be traced once the host gives it a body."""
    btf = kern.vmlinux_btf
    assert btf is not None
    fid = next(t.id for t in btf.parsed().types
               if type(t).__name__ == "BtfFunc" and t.name == "tcp_v4_connect")
    m = _array(kern)
    prog = Program.load(kern, TRACING, assemble(_store_ctx_slot(m, 2), syntax="kernel"),
                        expected_attach_type=FENTRY, attach_btf_id=fid)
    with pytest.raises(BpfError) as exc:
        prog.attach_trace()
    assert exc.value.errno == errno.ENOENT  # no body yet: nothing to trampoline
    connect = register_host_function(kern, "tcp_v4_connect", lambda sk, uaddr, alen: 0, 3,
                                     ret_bits=32, ret_signed=True)
    with prog.attach_trace():
        assert connect(0, 0, 16) == 0
    assert _lookup(kern, m) == 16


@pytest.mark.parametrize("ptype", [2, 5, 7, 24])  # kprobe, tracepoint, perf_event, raw_tp_w
def test_types_without_test_run_vs_kernel(kernel: ModuleType, kern: Kernel, ptype: int) -> None:
    text = "r0 = 0\nexit"
    r = kernel.prog_load(ptype, encode(assemble(text, syntax="kernel")))
    assert r.errno == 0
    try:
        want = kernel.prog_test_run(r.fd, repeat=0).errno
    finally:
        os.close(r.fd)
    prog = Program.load(kern, ptype, assemble(text, syntax="kernel"))
    with pytest.raises(BpfError) as exc:
        prog.test_run(repeat=0)
    assert exc.value.errno == want == 524  # ENOTSUPP
