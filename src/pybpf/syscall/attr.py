"""``union bpf_attr`` handling: sizes, ``CHECK_ATTR`` and writing results back.

Every command reads only a prefix of the 168-byte union; ``CHECK_ATTR(CMD)`` in
``kernel/bpf/syscall.c`` insists that the bytes after the command's ``*_LAST_FIELD`` are
zero (``EINVAL`` otherwise), so an old kernel never silently ignores a field a newer
caller relies on. :data:`LAST_FIELD_END` is that boundary for each command of Linux 6.18,
computed from the generated ctypes layouts so it cannot drift from the ABI.
"""

from __future__ import annotations

import ctypes
from typing import Any

from pybpf.uapi import (
    BpfCmd,
    bpf_attr,
    bpf_attr_btf_load,
    bpf_attr_enable_stats,
    bpf_attr_get_id,
    bpf_attr_info,
    bpf_attr_iter_create,
    bpf_attr_link_create,
    bpf_attr_link_create_uprobe_multi,
    bpf_attr_link_detach,
    bpf_attr_link_update,
    bpf_attr_map_batch,
    bpf_attr_map_create,
    bpf_attr_map_elem,
    bpf_attr_obj,
    bpf_attr_prog_attach,
    bpf_attr_prog_bind_map,
    bpf_attr_prog_load,
    bpf_attr_prog_stream_read,
    bpf_attr_query,
    bpf_attr_raw_tracepoint,
    bpf_attr_task_fd_query,
    bpf_attr_test,
    bpf_attr_token_create,
)

#: ``sizeof(union bpf_attr)`` of the reference kernel.
BPF_ATTR_SIZE = ctypes.sizeof(bpf_attr)
PAGE_SIZE = 4096


def off_of(view: type[ctypes.Structure], field: str) -> int:
    """``offsetof(view, field)``."""
    return int(getattr(view, field).offset)


def end_of(view: type[ctypes.Structure], field: str) -> int:
    """``offsetofend(view, field)``."""
    desc = getattr(view, field)
    return int(desc.offset + desc.size)


_LINK_CREATE_PID_END = (bpf_attr_link_create._anon2.offset
                        + end_of(bpf_attr_link_create_uprobe_multi, "pid"))

#: ``offsetofend(union bpf_attr, CMD##_LAST_FIELD)`` per command (Linux 6.18).
LAST_FIELD_END: dict[int, int] = {
    BpfCmd.BPF_MAP_CREATE: end_of(bpf_attr_map_create, "excl_prog_hash_size"),
    BpfCmd.BPF_MAP_LOOKUP_ELEM: end_of(bpf_attr_map_elem, "flags"),
    BpfCmd.BPF_MAP_UPDATE_ELEM: end_of(bpf_attr_map_elem, "flags"),
    BpfCmd.BPF_MAP_DELETE_ELEM: end_of(bpf_attr_map_elem, "key"),
    BpfCmd.BPF_MAP_GET_NEXT_KEY: end_of(bpf_attr_map_elem, "_anon0"),
    BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM: end_of(bpf_attr_map_elem, "flags"),
    BpfCmd.BPF_MAP_FREEZE: end_of(bpf_attr_map_elem, "map_fd"),
    BpfCmd.BPF_PROG_LOAD: end_of(bpf_attr_prog_load, "keyring_id"),
    BpfCmd.BPF_OBJ_PIN: end_of(bpf_attr_obj, "path_fd"),
    BpfCmd.BPF_OBJ_GET: end_of(bpf_attr_obj, "path_fd"),
    BpfCmd.BPF_PROG_ATTACH: end_of(bpf_attr_prog_attach, "expected_revision"),
    BpfCmd.BPF_PROG_DETACH: end_of(bpf_attr_prog_attach, "expected_revision"),
    BpfCmd.BPF_PROG_QUERY: end_of(bpf_attr_query, "revision"),
    BpfCmd.BPF_PROG_TEST_RUN: end_of(bpf_attr_test, "batch_size"),
    BpfCmd.BPF_PROG_GET_NEXT_ID: end_of(bpf_attr_get_id, "next_id"),
    BpfCmd.BPF_MAP_GET_NEXT_ID: end_of(bpf_attr_get_id, "next_id"),
    BpfCmd.BPF_BTF_GET_NEXT_ID: end_of(bpf_attr_get_id, "next_id"),
    BpfCmd.BPF_LINK_GET_NEXT_ID: end_of(bpf_attr_get_id, "next_id"),
    BpfCmd.BPF_PROG_GET_FD_BY_ID: end_of(bpf_attr_get_id, "_anon0"),
    BpfCmd.BPF_MAP_GET_FD_BY_ID: end_of(bpf_attr_get_id, "open_flags"),
    BpfCmd.BPF_BTF_GET_FD_BY_ID: end_of(bpf_attr_get_id, "fd_by_id_token_fd"),
    BpfCmd.BPF_LINK_GET_FD_BY_ID: end_of(bpf_attr_get_id, "_anon0"),
    BpfCmd.BPF_OBJ_GET_INFO_BY_FD: end_of(bpf_attr_info, "info"),
    BpfCmd.BPF_RAW_TRACEPOINT_OPEN: end_of(bpf_attr_raw_tracepoint, "cookie"),
    BpfCmd.BPF_BTF_LOAD: end_of(bpf_attr_btf_load, "btf_token_fd"),
    BpfCmd.BPF_TASK_FD_QUERY: end_of(bpf_attr_task_fd_query, "probe_addr"),
    BpfCmd.BPF_MAP_LOOKUP_BATCH: end_of(bpf_attr_map_batch, "flags"),
    BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_BATCH: end_of(bpf_attr_map_batch, "flags"),
    BpfCmd.BPF_MAP_UPDATE_BATCH: end_of(bpf_attr_map_batch, "flags"),
    BpfCmd.BPF_MAP_DELETE_BATCH: end_of(bpf_attr_map_batch, "flags"),
    BpfCmd.BPF_LINK_CREATE: _LINK_CREATE_PID_END,
    BpfCmd.BPF_LINK_UPDATE: end_of(bpf_attr_link_update, "_anon1"),
    BpfCmd.BPF_LINK_DETACH: end_of(bpf_attr_link_detach, "link_fd"),
    BpfCmd.BPF_ENABLE_STATS: end_of(bpf_attr_enable_stats, "type"),
    BpfCmd.BPF_ITER_CREATE: end_of(bpf_attr_iter_create, "flags"),
    BpfCmd.BPF_PROG_BIND_MAP: end_of(bpf_attr_prog_bind_map, "flags"),
    BpfCmd.BPF_TOKEN_CREATE: end_of(bpf_attr_token_create, "bpffs_fd"),
    BpfCmd.BPF_PROG_STREAM_READ_BY_FD: end_of(bpf_attr_prog_stream_read, "prog_fd"),
}

# Offsets of output fields inside the union, for copy_to_user back into the caller's attr.
OFF_LOG_TRUE_SIZE = off_of(bpf_attr_prog_load, "log_true_size")
OFF_FUNC_INFO_REC_SIZE = off_of(bpf_attr_prog_load, "func_info_rec_size")
OFF_LINE_INFO_REC_SIZE = off_of(bpf_attr_prog_load, "line_info_rec_size")
END_LOG_TRUE_SIZE = end_of(bpf_attr_prog_load, "log_true_size")
OFF_BTF_LOG_TRUE_SIZE = off_of(bpf_attr_btf_load, "btf_log_true_size")
END_BTF_LOG_TRUE_SIZE = end_of(bpf_attr_btf_load, "btf_log_true_size")
OFF_NEXT_ID = off_of(bpf_attr_get_id, "next_id")
OFF_INFO_LEN = off_of(bpf_attr_info, "info_len")
OFF_BATCH_COUNT = off_of(bpf_attr_map_batch, "count")
OFF_TEST_RETVAL = off_of(bpf_attr_test, "retval")
OFF_TEST_DATA_SIZE_OUT = off_of(bpf_attr_test, "data_size_out")
OFF_TEST_DURATION = off_of(bpf_attr_test, "duration")
OFF_TEST_CTX_SIZE_OUT = off_of(bpf_attr_test, "ctx_size_out")
OFF_QUERY_ATTACH_FLAGS = off_of(bpf_attr_query, "attach_flags")
OFF_QUERY_PROG_CNT = off_of(bpf_attr_query, "_anon1")
OFF_QUERY_REVISION = off_of(bpf_attr_query, "revision")
OFF_TFQ_BUF_LEN = off_of(bpf_attr_task_fd_query, "buf_len")


def check_attr(cmd: int, kattr: bytes | bytearray) -> bool:
    """``CHECK_ATTR``: True when a byte after the command's last field is non-zero."""
    end = LAST_FIELD_END.get(int(cmd))
    if end is None:
        return False
    return any(kattr[end:BPF_ATTR_SIZE])


def view(kattr: bytearray) -> Any:
    """A ``union bpf_attr`` ctypes view over the kernel's private copy of the attr."""
    return bpf_attr.from_buffer(kattr)
