// Array-map-heavy: per-packet statistics in an array and a per-CPU array — 32 lookups
// and read-modify-writes per packet, indexed by packet bytes.
#include "bench_common.h"

struct stat {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct stat);
} by_byte SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} pcpu SEC(".maps");

SEC("xdp")
int array_stats(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	__u64 total = 0;
	for (int i = 0; i < 16; i++) {
		__u32 key = data[42 + i];
		struct stat *s = bpf_map_lookup_elem(&by_byte, &key);
		if (!s)
			return XDP_ABORTED;
		s->packets += 1;
		s->bytes += PKT_LEN;
		__u32 k2 = key & 63;
		__u64 *c = bpf_map_lookup_elem(&pcpu, &k2);
		if (!c)
			return XDP_ABORTED;
		*c += key;
		total += *c;
	}
	return total & 1 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
