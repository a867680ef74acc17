// A map pointer reads as its map type's kernel struct (struct bpf_array, struct bpf_htab,
// ...: check_ptr_to_map_access), and a maybe-NULL pointer found equal to a non-NULL one is
// not NULL on that branch.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map {
	__u32 max_entries;
	__u32 key_size;
	struct bpf_map *inner_map_meta;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} hmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} amap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 9);
	__type(key, __u32);
	__type(value, __u64);
} lmap SEC(".maps");

SEC("tc")
int hash_max_entries(struct __sk_buff *skb)
{
	struct bpf_map *m = (struct bpf_map *)&hmap;

	return m->max_entries + ((struct bpf_map *)&lmap)->key_size;
}

SEC("tc")
int array_max_entries(struct __sk_buff *skb)
{
	return ((struct bpf_map *)&amap)->max_entries;
}

SEC("tc")
int inner_meta_deref(struct __sk_buff *skb)
{
	struct bpf_map *inner = ((struct bpf_map *)&hmap)->inner_map_meta;

	return inner->max_entries;
}

SEC("tc")
int map_ptr_write(struct __sk_buff *skb)
{
	((struct bpf_map *)&hmap)->max_entries = 1;
	return 0;
}

SEC("tc")
int eq_not_null(struct __sk_buff *skb)
{
	__u32 k = 0, k2 = skb->len & 3;
	__u64 *a = bpf_map_lookup_elem(&hmap, &k), *b;

	if (!a)
		return 1;
	b = bpf_map_lookup_elem(&hmap, &k2);
	asm volatile("if %[b] != %[a] goto +1; r0 = *(u64 *)(%[b] + 0);"
		     :: [a] "r"(a), [b] "r"(b) : "r0");
	return 0;
}

SEC("tc")
int ne_still_null(struct __sk_buff *skb)
{
	__u32 k = 0, k2 = skb->len & 3;
	__u64 *a = bpf_map_lookup_elem(&hmap, &k), *b;

	if (!a)
		return 1;
	b = bpf_map_lookup_elem(&hmap, &k2);
	asm volatile("if %[b] == %[a] goto +1; r0 = *(u64 *)(%[b] + 0);"
		     :: [a] "r"(a), [b] "r"(b) : "r0");
	return 0;
}

char _license[] SEC("license") = "GPL";
