"""Kernel functions (kfuncs) a BPF program may call, as data: flags and allowed program types.

Which BTF ``FUNC`` of vmlinux is a kfunc is marked in BTF itself (``DECL_TAG "bpf_kfunc"``),
but its flags (``KF_ACQUIRE``, ``KF_ITER_NEXT``, ...) and the program types that may call it
are not: the kernel keeps them in ``BTF_ID_FLAGS`` lists grouped into id sets, each set
registered for some program types (``register_btf_kfunc_id_set``; the ``UNSPEC`` hook means
every type). :data:`KFUNC_SETS` mirrors those sets.

Where the facts come from:

* the program types of every set were measured on the live 6.18 kernel
  (``tools/kfunc_hooks_probe.py`` loads a call of each tagged kfunc in each loadable
  program type and records which ones answer "calling kernel function %s is not allowed");
  kfuncs that only attach-type filters admit (struct_ops congestion control, LSM/fentry
  xattr and file kfuncs, kprobe session, iter sock_destroy) are in
  ``attach_filtered_kfuncs``, which no program type reaches;
* the flags come from the kernel sources' ``BTF_ID_FLAGS`` lists.

Implementations (what a call does at run time) live in :mod:`pybpf.helpers.kfunc_impls`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# ``include/linux/btf.h`` (6.18)
KF_ACQUIRE = 1 << 0  # returns a reference the program must release
KF_RELEASE = 1 << 1  # releases the reference passed in
KF_RET_NULL = 1 << 2  # return value may be NULL
KF_TRUSTED_ARGS = 1 << 4  # pointer arguments must be trusted (or referenced)
KF_SLEEPABLE = 1 << 5  # may sleep: sleepable programs only
KF_DESTRUCTIVE = 1 << 6  # needs CAP_SYS_BOOT
KF_RCU = 1 << 7  # pointer arguments may be RCU-protected
KF_ITER_NEW = 1 << 8  # open-coded iterator constructor
KF_ITER_NEXT = 1 << 9  # open-coded iterator step
KF_ITER_DESTROY = 1 << 10  # open-coded iterator destructor
KF_RCU_PROTECTED = 1 << 11  # iterator valid only inside an RCU read section
KF_FASTCALL = 1 << 12  # no_caller_saved_registers convention
KF_ARENA_RET = 1 << 13
KF_ARENA_ARG1 = 1 << 14
KF_ARENA_ARG2 = 1 << 15

KF_ITER_MASK = KF_ITER_NEW | KF_ITER_NEXT | KF_ITER_DESTROY


@dataclass(frozen=True)
class KfuncSet:
    """One ``btf_kfunc_id_set``: kfunc name → ``KF_*`` flags, and the program types
    (``enum bpf_prog_type`` values) it is registered for."""

    name: str
    prog_types: frozenset[int]
    flags: dict[str, int]


KFUNC_SETS: tuple[KfuncSet, ...] = (
    KfuncSet('common_kfunc_set', frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 26, 30, 31, 32}), {
        '__bpf_trap': 0,
        'bpf_arena_alloc_pages': KF_TRUSTED_ARGS | KF_SLEEPABLE | KF_ARENA_RET | KF_ARENA_ARG2,
        'bpf_arena_free_pages': KF_TRUSTED_ARGS | KF_SLEEPABLE | KF_ARENA_ARG2,
        'bpf_arena_reserve_pages': KF_TRUSTED_ARGS | KF_SLEEPABLE | KF_ARENA_ARG2,
        'bpf_cast_to_kern_ctx': KF_FASTCALL,
        'bpf_cgroup_read_xattr': KF_RCU,
        'bpf_copy_from_user_dynptr': KF_SLEEPABLE,
        'bpf_copy_from_user_str': KF_SLEEPABLE,
        'bpf_copy_from_user_str_dynptr': KF_SLEEPABLE,
        'bpf_copy_from_user_task_dynptr': KF_SLEEPABLE | KF_TRUSTED_ARGS,
        'bpf_copy_from_user_task_str': KF_SLEEPABLE,
        'bpf_copy_from_user_task_str_dynptr': KF_SLEEPABLE | KF_TRUSTED_ARGS,
        'bpf_dynptr_adjust': 0,
        'bpf_dynptr_clone': 0,
        'bpf_dynptr_copy': 0,
        'bpf_dynptr_is_null': 0,
        'bpf_dynptr_is_rdonly': 0,
        'bpf_dynptr_memset': 0,
        'bpf_dynptr_size': 0,
        'bpf_dynptr_slice': KF_RET_NULL,
        'bpf_dynptr_slice_rdwr': KF_RET_NULL,
        'bpf_get_kmem_cache': KF_RET_NULL,
        'bpf_iter_bits_destroy': KF_ITER_DESTROY,
        'bpf_iter_bits_new': KF_ITER_NEW,
        'bpf_iter_bits_next': KF_ITER_NEXT | KF_RET_NULL,
        'bpf_iter_css_destroy': KF_ITER_DESTROY,
        'bpf_iter_css_new': KF_ITER_NEW | KF_TRUSTED_ARGS | KF_RCU_PROTECTED,
        'bpf_iter_css_next': KF_ITER_NEXT | KF_RET_NULL,
        'bpf_iter_css_task_destroy': KF_ITER_DESTROY,
        'bpf_iter_css_task_new': KF_ITER_NEW | KF_TRUSTED_ARGS,
        'bpf_iter_css_task_next': KF_ITER_NEXT | KF_RET_NULL,
        'bpf_iter_dmabuf_destroy': KF_ITER_DESTROY | KF_SLEEPABLE,
        'bpf_iter_dmabuf_new': KF_ITER_NEW | KF_SLEEPABLE,
        'bpf_iter_dmabuf_next': KF_ITER_NEXT | KF_RET_NULL | KF_SLEEPABLE,
        'bpf_iter_kmem_cache_destroy': KF_ITER_DESTROY | KF_SLEEPABLE,
        'bpf_iter_kmem_cache_new': KF_ITER_NEW | KF_SLEEPABLE,
        'bpf_iter_kmem_cache_next': KF_ITER_NEXT | KF_RET_NULL | KF_SLEEPABLE,
        'bpf_iter_num_destroy': KF_ITER_DESTROY,
        'bpf_iter_num_new': KF_ITER_NEW,
        'bpf_iter_num_next': KF_ITER_NEXT | KF_RET_NULL,
        'bpf_iter_task_destroy': KF_ITER_DESTROY,
        'bpf_iter_task_new': KF_ITER_NEW | KF_TRUSTED_ARGS | KF_RCU_PROTECTED,
        'bpf_iter_task_next': KF_ITER_NEXT | KF_RET_NULL,
        'bpf_iter_task_vma_destroy': KF_ITER_DESTROY,
        'bpf_iter_task_vma_new': KF_ITER_NEW | KF_RCU,
        'bpf_iter_task_vma_next': KF_ITER_NEXT | KF_RET_NULL,
        'bpf_local_irq_restore': 0,
        'bpf_local_irq_save': 0,
        'bpf_map_sum_elem_count': KF_TRUSTED_ARGS,
        'bpf_modify_return_test_tp': 0,
        'bpf_preempt_disable': 0,
        'bpf_preempt_enable': 0,
        'bpf_probe_read_kernel_dynptr': 0,
        'bpf_probe_read_kernel_str_dynptr': 0,
        'bpf_probe_read_user_dynptr': 0,
        'bpf_probe_read_user_str_dynptr': 0,
        'bpf_rcu_read_lock': 0,
        'bpf_rcu_read_unlock': 0,
        'bpf_rdonly_cast': KF_FASTCALL,
        'bpf_res_spin_lock': KF_RET_NULL,
        'bpf_res_spin_lock_irqsave': KF_RET_NULL,
        'bpf_res_spin_unlock': 0,
        'bpf_res_spin_unlock_irqrestore': 0,
        'bpf_strcasecmp': 0,
        'bpf_strchr': 0,
        'bpf_strchrnul': 0,
        'bpf_strcmp': 0,
        'bpf_strcspn': 0,
        'bpf_stream_vprintk_impl': KF_TRUSTED_ARGS,
        'bpf_strlen': 0,
        'bpf_strnchr': 0,
        'bpf_strnlen': 0,
        'bpf_strnstr': 0,
        'bpf_strrchr': 0,
        'bpf_strspn': 0,
        'bpf_strstr': 0,
        'bpf_task_work_schedule_resume_impl': KF_TRUSTED_ARGS,
        'bpf_task_work_schedule_signal_impl': KF_TRUSTED_ARGS,
        'bpf_wq_init': 0,
        'bpf_wq_set_callback_impl': 0,
        'bpf_wq_start': 0,
        'bpf_xdp_metadata_rx_hash': 0,
        'bpf_xdp_metadata_rx_timestamp': 0,
        'bpf_xdp_metadata_rx_vlan_tag': 0,
    }),
    KfuncSet('attach_filtered_kfuncs', frozenset({}), {
        'bbr_cwnd_event': 0,
        'bbr_init': 0,
        'bbr_main': 0,
        'bbr_min_tso_segs': 0,
        'bbr_set_state': 0,
        'bbr_sndbuf_expand': 0,
        'bbr_ssthresh': 0,
        'bbr_undo_cwnd': 0,
        'bpf_fentry_test1': KF_SLEEPABLE,
        'bpf_get_dentry_xattr': KF_SLEEPABLE | KF_TRUSTED_ARGS,
        'bpf_get_file_xattr': KF_SLEEPABLE | KF_TRUSTED_ARGS,
        'bpf_get_task_exe_file': KF_ACQUIRE | KF_TRUSTED_ARGS | KF_RET_NULL,
        'bpf_modify_return_test': 0,
        'bpf_modify_return_test2': 0,
        'bpf_path_d_path': KF_TRUSTED_ARGS,
        'bpf_put_file': KF_RELEASE,
        'bpf_remove_dentry_xattr': KF_SLEEPABLE | KF_TRUSTED_ARGS,
        'bpf_session_cookie': 0,
        'bpf_session_is_return': 0,
        'bpf_set_dentry_xattr': KF_SLEEPABLE | KF_TRUSTED_ARGS,
        'bpf_sock_destroy': KF_TRUSTED_ARGS,
        'cubictcp_acked': 0,
        'cubictcp_cong_avoid': 0,
        'cubictcp_cwnd_event': 0,
        'cubictcp_init': 0,
        'cubictcp_recalc_ssthresh': 0,
        'cubictcp_state': 0,
        'tcp_cong_avoid_ai': 0,
        'tcp_reno_cong_avoid': 0,
        'tcp_reno_ssthresh': 0,
        'tcp_reno_undo_cwnd': 0,
        'tcp_slow_start': 0,
    }),
    KfuncSet('generic_kfunc_set', frozenset({3, 5, 6, 7, 8, 9, 13, 15, 18, 23, 25, 26, 31}), {
        'bpf_cgroup_acquire': KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        'bpf_cgroup_ancestor': KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        'bpf_cgroup_from_id': KF_ACQUIRE | KF_RET_NULL,
        'bpf_cgroup_release': KF_RELEASE,
        'bpf_key_put': KF_RELEASE,
        'bpf_list_back': KF_RET_NULL,
        'bpf_list_front': KF_RET_NULL,
        'bpf_list_pop_back': KF_ACQUIRE | KF_RET_NULL,
        'bpf_list_pop_front': KF_ACQUIRE | KF_RET_NULL,
        'bpf_list_push_back_impl': 0,
        'bpf_list_push_front_impl': 0,
        'bpf_lookup_system_key': KF_ACQUIRE | KF_RET_NULL,
        'bpf_lookup_user_key': KF_ACQUIRE | KF_RET_NULL | KF_SLEEPABLE,
        'bpf_obj_drop_impl': KF_RELEASE,
        'bpf_obj_new_impl': KF_ACQUIRE | KF_RET_NULL,
        'bpf_percpu_obj_drop_impl': KF_RELEASE,
        'bpf_percpu_obj_new_impl': KF_ACQUIRE | KF_RET_NULL,
        'bpf_rbtree_add_impl': 0,
        'bpf_rbtree_first': KF_RET_NULL,
        'bpf_rbtree_left': KF_RET_NULL,
        'bpf_rbtree_remove': KF_ACQUIRE | KF_RET_NULL,
        'bpf_rbtree_right': KF_RET_NULL,
        'bpf_rbtree_root': KF_RET_NULL,
        'bpf_refcount_acquire_impl': KF_ACQUIRE | KF_RET_NULL | KF_RCU,
        'bpf_send_signal_task': KF_TRUSTED_ARGS,
        'bpf_task_acquire': KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        'bpf_task_from_pid': KF_ACQUIRE | KF_RET_NULL,
        'bpf_task_from_vpid': KF_ACQUIRE | KF_RET_NULL,
        'bpf_task_get_cgroup1': KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        'bpf_task_release': KF_RELEASE,
        'bpf_task_under_cgroup': KF_RCU,
        'bpf_throw': 0,
    }),
    KfuncSet('cpumask_kfunc_set', frozenset({5, 7, 26, 31}), {
        'bpf_cpumask_acquire': KF_ACQUIRE | KF_TRUSTED_ARGS,
        'bpf_cpumask_and': KF_RCU,
        'bpf_cpumask_any_and_distribute': KF_RCU,
        'bpf_cpumask_any_distribute': KF_RCU,
        'bpf_cpumask_clear': KF_RCU,
        'bpf_cpumask_clear_cpu': KF_RCU,
        'bpf_cpumask_copy': KF_RCU,
        'bpf_cpumask_create': KF_ACQUIRE | KF_RET_NULL,
        'bpf_cpumask_empty': KF_RCU,
        'bpf_cpumask_equal': KF_RCU,
        'bpf_cpumask_first': KF_RCU,
        'bpf_cpumask_first_and': KF_RCU,
        'bpf_cpumask_first_zero': KF_RCU,
        'bpf_cpumask_full': KF_RCU,
        'bpf_cpumask_intersects': KF_RCU,
        'bpf_cpumask_or': KF_RCU,
        'bpf_cpumask_populate': KF_RCU,
        'bpf_cpumask_release': KF_RELEASE,
        'bpf_cpumask_set_cpu': KF_RCU,
        'bpf_cpumask_setall': KF_RCU,
        'bpf_cpumask_subset': KF_RCU,
        'bpf_cpumask_test_and_clear_cpu': KF_RCU,
        'bpf_cpumask_test_and_set_cpu': KF_RCU,
        'bpf_cpumask_test_cpu': KF_RCU,
        'bpf_cpumask_weight': KF_RCU,
        'bpf_cpumask_xor': KF_RCU,
    }),
    KfuncSet('nf_conntrack_kfunc_set', frozenset({3, 6}), {
        'bpf_ct_change_status': KF_TRUSTED_ARGS,
        'bpf_ct_change_timeout': KF_TRUSTED_ARGS,
        'bpf_ct_insert_entry': KF_ACQUIRE | KF_RET_NULL | KF_RELEASE,
        'bpf_ct_release': KF_RELEASE,
        'bpf_ct_set_nat_info': KF_TRUSTED_ARGS,
        'bpf_ct_set_status': KF_TRUSTED_ARGS,
        'bpf_ct_set_timeout': KF_TRUSTED_ARGS,
        'bpf_skb_ct_alloc': KF_ACQUIRE | KF_RET_NULL,
        'bpf_skb_ct_lookup': KF_ACQUIRE | KF_RET_NULL,
        'bpf_xdp_ct_alloc': KF_ACQUIRE | KF_RET_NULL,
        'bpf_xdp_ct_lookup': KF_ACQUIRE | KF_RET_NULL,
    }),
    KfuncSet('xdp_kfunc_set', frozenset({6}), {
        'bpf_dynptr_from_xdp': 0,
        'bpf_xdp_get_xfrm_state': KF_ACQUIRE | KF_RET_NULL,
        'bpf_xdp_pull_data': 0,
        'bpf_xdp_xfrm_state_release': KF_RELEASE,
    }),
    KfuncSet('crypt_init_kfunc_set', frozenset({31}), {
        'bpf_crypto_ctx_acquire': KF_ACQUIRE | KF_RCU | KF_RET_NULL,
        'bpf_crypto_ctx_create': KF_ACQUIRE | KF_RET_NULL | KF_SLEEPABLE,
        'bpf_crypto_ctx_release': KF_RELEASE,
    }),
    KfuncSet('crypt_kfunc_set', frozenset({3, 4, 6}), {
        'bpf_crypto_decrypt': KF_RCU,
        'bpf_crypto_encrypt': KF_RCU,
    }),
    KfuncSet('bpf_testmod_release_set', frozenset({3, 5, 7, 26, 31}), {
        'bpf_kfunc_call_memb_release': KF_RELEASE,
        'bpf_kfunc_call_test_release': KF_RELEASE,
    }),
    KfuncSet('sock_addr_sock_ops_kfunc_set', frozenset({8, 9, 13, 15, 18, 23, 25}), {
        'bpf_sock_addr_set_sun_path': 0,
        'bpf_sock_ops_enable_tx_tstamp': 0,
    }),
    KfuncSet('cgroup_rstat_kfunc_set', frozenset({5, 7, 26}), {
        'css_rstat_flush': KF_SLEEPABLE,
        'css_rstat_updated': 0,
    }),
    KfuncSet('skb_kfunc_set', frozenset({1, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18, 23, 25, 26, 32}), {
        'bpf_dynptr_from_skb': KF_TRUSTED_ARGS,
    }),
    KfuncSet('skb_meta_kfunc_set', frozenset({3, 4}), {
        'bpf_dynptr_from_skb_meta': KF_TRUSTED_ARGS,
    }),
    KfuncSet('tcp_reqsk_kfunc_set', frozenset({3}), {
        'bpf_sk_assign_tcp_reqsk': KF_TRUSTED_ARGS,
    }),
)


@cache
def _by_name() -> dict[str, list[KfuncSet]]:
    out: dict[str, list[KfuncSet]] = {}
    for s in KFUNC_SETS:
        for name in s.flags:
            out.setdefault(name, []).append(s)
    return out


def kfunc_flags(name: str, prog_type: int) -> int | None:
    """``btf_kfunc_id_set_contains``: the flags of ``name`` for a program of ``prog_type``,
    or ``None`` when no set registered for that type holds it."""
    for s in _by_name().get(name, ()):
        if prog_type in s.prog_types:
            return s.flags[name]
    return None


#: kfuncs of ``attach_filtered_kfuncs`` a program type reaches through its expected
#: attach type (the kernel's per-set filters): name -> (program type, attach types).
#: ``bpf_kprobe_multi_kfunc_filter``: the session kfuncs for kprobe and uprobe sessions.
ATTACH_ADMITTED: dict[str, tuple[int, frozenset[int]]] = {
    "bpf_session_cookie": (2, frozenset({56, 57})),
    "bpf_session_is_return": (2, frozenset({56, 57})),
}


def kfunc_flags_for(name: str, prog_type: int, expected_attach_type: int) -> int | None:
    """:func:`kfunc_flags`, plus the kfuncs an attach-type filter admits."""
    flags = kfunc_flags(name, prog_type)
    admitted = ATTACH_ADMITTED.get(name)
    if flags is None and admitted is not None and prog_type == admitted[0] \
            and expected_attach_type in admitted[1]:
        for s in _by_name().get(name, ()):
            return s.flags[name]
    return flags


def is_known_kfunc(name: str) -> bool:
    """True if some set (for any program type) lists ``name``."""
    return name in _by_name()


__all__ = [
    "ATTACH_ADMITTED",
    "KFUNC_SETS",
    "KF_ACQUIRE",
    "KF_ARENA_ARG1",
    "KF_ARENA_ARG2",
    "KF_ARENA_RET",
    "KF_DESTRUCTIVE",
    "KF_FASTCALL",
    "KF_ITER_DESTROY",
    "KF_ITER_MASK",
    "KF_ITER_NEW",
    "KF_ITER_NEXT",
    "KF_RCU",
    "KF_RCU_PROTECTED",
    "KF_RELEASE",
    "KF_RET_NULL",
    "KF_SLEEPABLE",
    "KF_TRUSTED_ARGS",
    "KfuncSet",
    "is_known_kfunc",
    "kfunc_flags",
    "kfunc_flags_for",
]
