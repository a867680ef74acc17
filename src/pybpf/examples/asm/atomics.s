# Atomic add and fetch-add on a stack slot (kernel syntax).
# expect: 60
r1 = 0
*(u64 *)(r10 -8) = r1
r2 = 5
lock *(u64 *)(r10 -8) += r2
r2 = 7
r2 = atomic64_fetch_add((u64 *)(r10 -8), r2)
r0 = *(u64 *)(r10 -8)
r0 *= r2
exit
