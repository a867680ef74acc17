// Hash-map-heavy: 16 lookups per packet in a 1,024-entry hash map, inserting on a miss
// (the first run fills the map; later runs are all hits, as in a flow table).
#include "bench_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} flows SEC(".maps");

SEC("xdp")
int hash_lookup(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	__u32 base = *(__u32 *)(data + 26);
	__u64 sum = 0;
	for (int i = 0; i < 16; i++) {
		__u32 key = (base ^ (i * 2654435761u)) & 1023;
		__u64 *v = bpf_map_lookup_elem(&flows, &key);
		if (v) {
			sum += *v;
		} else {
			__u64 init = key;
			bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST);
		}
	}
	return sum & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
