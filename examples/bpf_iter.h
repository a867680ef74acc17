/* Open-coded iterators for the pybpf examples: the bpf_iter_num kfuncs and the
 * bpf_for / bpf_repeat loop macros (libbpf-dev's bpf_helpers.h on this machine predates
 * them). A loop is new() once, next() until it returns NULL, destroy() once; the cleanup
 * attribute destroys the iterator on every exit from the loop's scope.
 */
#ifndef PYBPF_EXAMPLES_BPF_ITER_H
#define PYBPF_EXAMPLES_BPF_ITER_H

struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __weak __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __weak __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __weak __ksym;

/* for (i = start; i < end; i++), the verifier proving termination through the iterator */
#define bpf_for(i, start, end)                                                          \
	for (struct bpf_iter_num ___it __attribute__((aligned(8),                       \
				cleanup(bpf_iter_num_destroy))),                        \
	     *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, (start), (end)), \
					      (void)bpf_iter_num_destroy, (void *)0);   \
	     ({                                                                         \
		int *___t = bpf_iter_num_next(&___it);                                  \
		(___t && ((i) = *___t, 1));                                             \
	     });)

/* the loop body runs n times */
#define bpf_repeat(n)                                                                   \
	for (struct bpf_iter_num ___it __attribute__((aligned(8),                       \
				cleanup(bpf_iter_num_destroy))),                        \
	     *___p __attribute__((unused)) = (bpf_iter_num_new(&___it, 0, (n)),         \
					      (void)bpf_iter_num_destroy, (void *)0);   \
	     bpf_iter_num_next(&___it);)

#endif
