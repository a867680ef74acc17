// Hash-map writes: per packet, 8 updates of existing keys (BPF_ANY), 4 deletes and 4
// re-inserts — the map's size is the same after every run.
#include "bench_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u64);
} counters SEC(".maps");

SEC("xdp")
int hash_update(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	__u64 seed = load64(data + 30);
	long errs = 0;
	for (__u64 i = 0; i < 8; i++) {
		__u64 key = i * 7 + 1;
		__u64 value = seed + i;
		errs += bpf_map_update_elem(&counters, &key, &value, BPF_ANY) != 0;
	}
	for (__u64 i = 0; i < 4; i++) {
		__u64 key = i * 7 + 1;
		errs += bpf_map_delete_elem(&counters, &key) != 0;
		errs += bpf_map_update_elem(&counters, &key, &seed, BPF_NOEXIST) != 0;
	}
	return errs ? XDP_ABORTED : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
