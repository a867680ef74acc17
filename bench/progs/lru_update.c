// LRU-hash writes: per packet, 8 updates of existing keys (BPF_ANY: each takes a fresh
// element from the CPU's local free list and returns the old one), 4 deletes and 4
// re-inserts, 8 lookups (setting the reference bit) — the map's size is the same after
// every run, so no run evicts.
#include "bench_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u64);
} recent SEC(".maps");

SEC("xdp")
int lru_update(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	__u64 seed = load64(data + 30);
	long errs = 0;
	for (__u64 i = 0; i < 8; i++) {
		__u64 key = i * 7 + 1;
		__u64 value = seed + i;
		errs += bpf_map_update_elem(&recent, &key, &value, BPF_ANY) != 0;
	}
	for (__u64 i = 0; i < 4; i++) {
		__u64 key = i * 7 + 1;
		errs += bpf_map_delete_elem(&recent, &key) != 0;
		errs += bpf_map_update_elem(&recent, &key, &seed, BPF_NOEXIST) != 0;
	}
	for (__u64 i = 0; i < 8; i++) {
		__u64 key = i * 7 + 1;
		errs += bpf_map_lookup_elem(&recent, &key) == 0;
	}
	return errs ? XDP_ABORTED : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
