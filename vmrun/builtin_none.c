/* SPDX-License-Identifier: MIT */
/* Used when the build has no reference guest to embed. */
#include <stddef.h>

#include "vmrun/vmrun.h"

const unsigned char *const builtin_guest = NULL;
const size_t *const builtin_guest_size = NULL;
