// BPF arena: allocate a page, write through a kernel-view pointer, leave the user-view
// pointer in the page; user space reads the same page through its mmap of the map.
// No global variables: the live-kernel side of the test loads these programs without
// libbpf (libbpf 1.1 predates arenas).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "arena_common.h"

#define USER_VM_START 0x10000000 /* page aligned, below 4 GiB: fits clang 14's __uint */

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4); /* pages */
	__uint(map_extra, USER_VM_START);
} arena SEC(".maps");

SEC("syscall")
int arena_alloc(void *ctx)
{
	__u64 __arena *page, *back;
	volatile __u64 __arena *v;
	int i;

	page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page)
		return 1;
	cast_kern(page);
	for (i = 0; i < 8; i++)
		page[i] = 0x1000 + i;
	page[511] = 0xfeedULL;
	back = page;
	cast_user(back);
	page[8] = (__u64)back;
	v = page;
	return v[3] + v[511];
}

/* a load from an arena page nobody allocated reads 0, a store there is dropped */
SEC("syscall")
int arena_fault(void *ctx)
{
	volatile __u64 __arena *p = (volatile __u64 __arena *)(USER_VM_START + 3 * 4096);

	bpf_arena_free_pages(&arena, NULL, 0); /* associates the program with the arena */
	cast_kern(p);
	*p = 7;
	return *p == 0 ? 2 : 3;
}

/* allocate two pages at a fixed address, then free them again */
SEC("syscall")
int arena_free(void *ctx)
{
	void __arena *want = (void __arena *)(USER_VM_START + 2 * 4096);
	char __arena *pages = bpf_arena_alloc_pages(&arena, want, 2, NUMA_NO_NODE, 0);

	if (!pages)
		return 1;
	if (pages != want)
		return 2;
	bpf_arena_free_pages(&arena, pages, 2);
	return 0;
}

/* addr_space_cast in a program that does not reference an arena map */
SEC("syscall")
int no_arena(void *ctx)
{
	volatile __u64 __arena *p = (volatile __u64 __arena *)(USER_VM_START);

	cast_kern(p);
	return *p;
}

char _license[] SEC("license") = "GPL";
