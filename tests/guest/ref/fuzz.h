/* SPDX-License-Identifier: MIT */
#ifndef VMM_REF_FUZZ_H
#define VMM_REF_FUZZ_H

/* The reference guest's fuzzing harness (fuzz.c) and target (target.c). */

#include <stddef.h>
#include <stdint.h>

struct fuzz_env {
	uint8_t *scratch; /* pages an input may write */
	size_t scratch_pages;
};

/* target.c: runs one input; 0, or a crash code to report. */
int fuzz_target(const uint8_t *in, size_t n, const struct fuzz_env *env);

/* fuzz.c: what the target may do to devices. */
void fuzz_uart_poke(uint8_t ier, uint8_t scr);
void fuzz_rng(void);

#endif /* VMM_REF_FUZZ_H */
