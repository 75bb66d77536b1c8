/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_FUZZ_H
#define VMM_TESTS_FUZZ_H

/*
 * Each harness defines LLVMFuzzerTestOneInput(). Built with clang and
 * -Dfuzz=true they are libFuzzer targets; otherwise replay.c gives them a
 * main() that runs files named on the command line, or a fixed number of
 * pseudo-random and mutated inputs (the CI smoke run).
 */

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Whether the image readers refuse a changed byte: not in a libFuzzer
 * build, whose readers skip their checksums (snapshot/image_read.c) so
 * that mutations reach what lies behind them.
 */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define FUZZ_CHANGES_REFUSED 0
#else
#define FUZZ_CHANGES_REFUSED 1
#endif

#endif /* VMM_TESTS_FUZZ_H */
