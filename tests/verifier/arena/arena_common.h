/* Arena helpers for clang without __BPF_FEATURE_ADDR_SPACE_CAST (clang < 18): the
 * pointers are plain integers to the compiler; casts between the arena (address space 1)
 * and kernel (0) views are explicit addr_space_cast instructions, as the kernel
 * selftests' bpf_arena_common.h does in its fallback branch. */
#pragma once

#define BPF_ADDR_SPACE_CAST_OFF 1

/* newer than the installed uapi headers */
#define BPF_MAP_TYPE_ARENA 33

#define __arena
#define __arena_global __attribute__((section(".addr_space.1")))

/* dst_as << 16 | src_as: cast_kern = from 1 to 0 (imm 1), cast_user = from 0 to 1 (imm 1 << 16) */
#define bpf_addr_space_cast(var, dst_as, src_as)		\
	asm volatile(".byte 0xBF;				\
		     .ifc %[reg], r0;				\
		     .byte 0x00;				\
		     .endif;					\
		     .ifc %[reg], r1;				\
		     .byte 0x11;				\
		     .endif;					\
		     .ifc %[reg], r2;				\
		     .byte 0x22;				\
		     .endif;					\
		     .ifc %[reg], r3;				\
		     .byte 0x33;				\
		     .endif;					\
		     .ifc %[reg], r4;				\
		     .byte 0x44;				\
		     .endif;					\
		     .ifc %[reg], r5;				\
		     .byte 0x55;				\
		     .endif;					\
		     .ifc %[reg], r6;				\
		     .byte 0x66;				\
		     .endif;					\
		     .ifc %[reg], r7;				\
		     .byte 0x77;				\
		     .endif;					\
		     .ifc %[reg], r8;				\
		     .byte 0x88;				\
		     .endif;					\
		     .ifc %[reg], r9;				\
		     .byte 0x99;				\
		     .endif;					\
		     .short %[off];				\
		     .long %[as]"				\
		     : [reg]"+r"(var)				\
		     : [off]"i"(BPF_ADDR_SPACE_CAST_OFF)	\
		     , [as]"i"((dst_as << 16) | src_as));

#define cast_kern(ptr) bpf_addr_space_cast(ptr, 0, 1)
#define cast_user(ptr) bpf_addr_space_cast(ptr, 1, 0)

#ifndef NUMA_NO_NODE
#define NUMA_NO_NODE (-1)
#endif

void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
				    int node_id, __u64 flags) __ksym __weak;
void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym __weak;
