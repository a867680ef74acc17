// __arena globals: variables in the .addr_space.1 section live in the arena map. The
// loader copies their initial values into the arena's first page and relocates their
// ld_imm64s as BPF_PSEUDO_MAP_VALUE of the arena map; the verifier gives the program
// their user addresses, which it casts to the kernel view before each access.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "arena_common.h"

#define USER_VM_START 0x30000000 /* page aligned, below 4 GiB: fits clang 14's __uint */

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4); /* pages */
	__uint(map_extra, USER_VM_START);
} arena SEC(".maps");

__u64 __arena_global counter = 40;
__u32 __arena_global hist[8];
char __arena_global tag[6] = "arena";

/* read-modify-write an initialised global */
SEC("syscall")
int bump(void *ctx)
{
	__u64 *c = &counter;

	cast_kern(c);
	*c += 2;
	return *c;
}

/* index a zero-initialised global array with a bounded value */
SEC("syscall")
int histogram(void *ctx)
{
	__u32 *h = hist;
	__u64 *c = &counter;
	__u32 i;

	cast_kern(h);
	cast_kern(c);
	i = *c & 7;
	h[i] += 1;
	h[(i + 1) & 7] += 10;
	return h[i] + h[(i + 1) & 7];
}

/* the user address of a global, as user space sees it */
SEC("syscall")
int where(void *ctx)
{
	char *t = tag;
	__u64 user = (__u64)t;

	cast_kern(t);
	return (user == USER_VM_START + ((__u64)t & 0xfff)) + 2 * (t[0] == 'a') + 4 * (t[4] == 'a');
}

/* an arena global next to the arena's allocator */
SEC("syscall")
int alloc_and_link(void *ctx)
{
	__u64 *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u64 *c = &counter;

	if (!page)
		return 1;
	cast_kern(c);
	cast_kern(page);
	page[0] = *c;
	*c = 7;
	return page[0];
}

char _license[] SEC("license") = "GPL";
