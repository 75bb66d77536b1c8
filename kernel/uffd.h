/* SPDX-License-Identifier: MIT */
#ifndef VMM_UFFD_H
#define VMM_UFFD_H

/*
 * userfaultfd(2) in missing mode over a range of the VMM's mapping of a
 * segment (a memfd, shared memory): a read or write of a page the memfd
 * does not hold yet, by a vCPU through KVM or by any VMM thread, waits
 * until the page is installed with uffd_copy() or uffd_zero(), each of
 * which installs pages atomically and wakes whoever waits on them. A lazy
 * restore serves guest memory this way.
 */

#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

/* A non-blocking userfaultfd with the API handshake done; -errno if the
 * kernel has none or does not serve shared memory. */
int uffd_open(int *fd) __must_check;

int uffd_register(int fd, void *addr, size_t len) __must_check;
int uffd_unregister(int fd, void *addr, size_t len) __must_check;

/*
 * Installs @len bytes from @src at @dst (page-aligned). Pages that are
 * there already (-EEXIST from the kernel) are left as they are and
 * counted in *@existed (if not NULL); the rest are installed.
 */
int uffd_copy(int fd, void *dst, const void *src, size_t len,
	      size_t *existed) __must_check;

/* Installs zero pages over [@dst, @dst + @len), as uffd_copy(). */
int uffd_zero(int fd, void *dst, size_t len, size_t *existed) __must_check;

/*
 * Reads one pending fault: 1 with its address in *@addr, 0 when none is
 * pending, or -errno.
 */
int uffd_next_fault(int fd, uint64_t *addr) __must_check;

#endif /* VMM_UFFD_H */
