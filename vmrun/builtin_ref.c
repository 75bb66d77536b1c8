/* SPDX-License-Identifier: MIT */
/* The reference guest, embedded by the build (tests/guest/ref). */
#include <stddef.h>

#include "vmrun/vmrun.h"

extern const unsigned char refguest_bin[];
extern const size_t refguest_bin_size;

const unsigned char *const builtin_guest = refguest_bin;
const size_t *const builtin_guest_size = &refguest_bin_size;
