// A graph root's contains: tag for tests/btf/test_struct_meta_vs_kernel.py (see the file name).
#include "graph_common.h"
struct node_data { long v; long n; };
struct node_data keep_node;
struct holder { struct bpf_spin_lock l; struct bpf_list_head h __contains(node_data, n); };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct holder); } m SEC(".maps");
SEC("syscall") int p(void *ctx) { return 0; }
char _license[] SEC("license") = "GPL";
