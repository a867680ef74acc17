"""fentry/fexit/fmod_ret and LSM: ``btf_ctx_access`` and ``check_attach_btf_id`` where the
live kernel cannot be asked (it refuses these loads with EPERM here), so the expected
messages are 6.18's source (``kernel/bpf/btf.c``, ``verifier.c``, ``bpf_lsm.c``). Targets
are found in the machine's vmlinux BTF by shape, not hard-coded ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pybpf.btf.raw import Btf, BtfFunc, BtfFuncProto, BtfKind, BtfPtr, BtfStruct
from pybpf.errors import BpfError
from pybpf.isa.asm import assemble
from pybpf.kernel import Kernel
from pybpf.program import Program

TRACING, LSM = 26, 29
FENTRY, FEXIT, MODIFY_RETURN, LSM_MAC = 24, 25, 26, 27
R0_EXIT = "r0 = 0\nexit"


def _load(k: Kernel, ptype: int, eat: int, btf_id: int, text: str,
          license: str = "GPL") -> tuple[int, str]:
    try:
        prog = Program.load(k, ptype, assemble(text, syntax="kernel"), expected_attach_type=eat,
                            attach_btf_id=btf_id, log_level=2, license=license)
    except BpfError as exc:
        return exc.errno, exc.log or ""
    log = prog.log
    prog.close()
    return 0, log


def _func(btf: Btf, pred: Callable[[BtfFunc, BtfFuncProto], bool]) -> BtfFunc:
    for t in btf.types:
        if isinstance(t, BtfFunc):
            proto = btf.types[t.type]
            if isinstance(proto, BtfFuncProto) and pred(t, proto):
                return t
    pytest.skip("no such function in this vmlinux")
    raise AssertionError


def _struct_ptr(btf: Btf, type_id: int) -> BtfStruct | None:
    t = btf.resolve(type_id)
    if isinstance(t, BtfPtr):
        s = btf.resolve(t.type)
        return s if isinstance(s, BtfStruct) else None
    return None


def _int_ret(btf: Btf, proto: BtfFuncProto) -> bool:
    return proto.type != 0 and btf.resolve(proto.type).kind == BtfKind.INT


def test_fentry_pointer_argument_is_an_untrusted_walkable_ptr(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    fn = _func(btf, lambda f, p: f.name == "security_task_free" or (
        len(p.params) == 1 and _struct_ptr(btf, p.params[0].type) is not None
        and _struct_ptr(btf, p.params[0].type).name == "task_struct"))  # type: ignore[union-attr]
    err, log = _load(k, TRACING, FENTRY, fn.id, "r2 = *(u64 *)(r1 + 0)\nr0 = *(u32 *)(r2 + 0)\n"
                     + R0_EXIT)
    assert err == 0, log
    assert f"func '{fn.name}' arg0 has btf_id" in log and "type STRUCT 'task_struct'" in log
    # fentry arguments are not PTR_TRUSTED (prog_args_trusted: tp_btf and iterators only)
    assert "R2=ptr_task_struct()" in log and "trusted_ptr_" not in log


def test_fexit_reads_the_return_value_slot(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    fn = _func(btf, lambda f, p: len(p.params) == 1 and _int_ret(btf, p)
               and btf.resolve(p.params[0].type).kind == BtfKind.INT)
    err, log = _load(k, TRACING, FEXIT, fn.id, "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT)
    assert err == 0, log
    err, log = _load(k, TRACING, FEXIT, fn.id, "r2 = *(u64 *)(r1 + 16)\n" + R0_EXIT)
    assert err == 13
    assert f"func '{fn.name}' doesn't have 3-th argument" in log
    err, log = _load(k, TRACING, FENTRY, fn.id, "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT)
    assert err == 13 and f"func '{fn.name}' doesn't have 2-th argument" in log


def test_fentry_and_fexit_must_return_zero(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    fn = _func(btf, lambda f, p: len(p.params) == 1 and _int_ret(btf, p))
    for eat in (FENTRY, FEXIT):
        err, log = _load(k, TRACING, eat, fn.id, "r0 = 1\nexit")
        assert err == 22 and "should have been in [0, 0]" in log
    assert _load(k, TRACING, MODIFY_RETURN, fn.id, "r0 = 1\nexit")[0] == 0


def test_fmod_ret_needs_an_int_return(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    fn = _func(btf, lambda f, p: len(p.params) == 1 and p.type != 0
               and isinstance(btf.resolve(p.type), BtfPtr))
    err, log = _load(k, TRACING, MODIFY_RETURN, fn.id, "r2 = *(u64 *)(r1 + 8)\n" + R0_EXIT)
    assert err == 13 and "ret type PTR not allowed for fmod_ret" in log


def test_pointer_to_int_argument_is_a_scalar(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    """A ``char *`` (pointer to int) argument reads as a scalar."""
    def char_ptr_arg(f: BtfFunc, p: BtfFuncProto) -> bool:
        if len(p.params) != 1 or not _int_ret(btf, p):
            return False
        arg = btf.resolve(p.params[0].type)
        return isinstance(arg, BtfPtr) and btf.resolve(arg.type).kind == BtfKind.INT
    fn = _func(btf, char_ptr_arg)
    err, log = _load(k, TRACING, FENTRY, fn.id, "r2 = *(u64 *)(r1 + 0)\n" + R0_EXIT)
    assert err == 0 and "R2=scalar()" in log
    err, log = _load(k, TRACING, FENTRY, fn.id, "r2 = *(u32 *)(r1 + 0)\n" + R0_EXIT)
    assert err == 13 and f"func '{fn.name}' size 4 must be 8" in log


def test_attach_errors(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    task = btf.find("task_struct", BtfKind.STRUCT)
    err, log = _load(k, TRACING, FENTRY, task, R0_EXIT)
    assert err == 22 and f"attach_btf_id {task} is not a function" in log
    do_exit = btf.find_all("do_exit", BtfKind.FUNC)
    if do_exit:
        err, log = _load(k, TRACING, FEXIT, do_exit[0], R0_EXIT)
        assert err == 22 and "Attaching fexit/fmod_ret to __noreturn functions is rejected." in log
        assert _load(k, TRACING, FENTRY, do_exit[0], R0_EXIT)[0] == 0
    deny = btf.find_all("migrate_disable", BtfKind.FUNC)
    if deny:
        assert _load(k, TRACING, FENTRY, deny[0], R0_EXIT)[0] == 22
    variadic = _func(btf, lambda f, p: p.variadic and len(p.params) <= 12)
    err, log = _load(k, TRACING, FENTRY, variadic.id, R0_EXIT)
    assert err == 22 and f"The function {variadic.name} with variable args is unsupported." in log


def test_lsm_attach_rules(k: Kernel, vmlinux: Btf) -> None:
    btf = vmlinux
    hooks = btf.find_all("bpf_lsm_file_open", BtfKind.FUNC)
    if not hooks:
        pytest.skip("no LSM hooks in this vmlinux")
    assert _load(k, LSM, LSM_MAC, hooks[0], R0_EXIT)[0] == 0
    err, log = _load(k, LSM, LSM_MAC, hooks[0], R0_EXIT, license="Proprietary")
    assert err == 22 and "LSM programs must have a GPL compatible license" in log
    sched = btf.find("schedule", BtfKind.FUNC)
    err, log = _load(k, LSM, LSM_MAC, sched, R0_EXIT)
    assert err == 22 and f"attach_btf_id {sched} points to wrong type name schedule" in log
    disabled = btf.find_all("bpf_lsm_getprocattr", BtfKind.FUNC)
    if disabled:
        err, log = _load(k, LSM, LSM_MAC, disabled[0], R0_EXIT)
        assert err == 22 and "points to disabled hook bpf_lsm_getprocattr" in log
    # file_open(struct file *file): LSM arguments are trusted
    err, log = _load(k, LSM, LSM_MAC, hooks[0], "r2 = *(u64 *)(r1 + 0)\n" + R0_EXIT)
    assert err == 0 and "R2=trusted_ptr_file()" in log
