// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * No programs: compiling this file with clang -target bpf checks that the BPF
 * compiler lays out every shared struct as include/sockmesh/abi_assert.h says
 * (tests/unit/test_abi.c checks the same numbers with the host compiler).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "sockmesh/abi_assert.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
