/* SPDX-License-Identifier: MIT */
/*
 * The kernel-image parser against arbitrary files: it must refuse with a
 * reason or accept an image all of whose segments lie inside the file.
 */
#include <stdlib.h>

#include "kernel/x86/loader.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kernel_image img;
	char err[256];
	unsigned int i;

	if (kernel_parse(data, size, &img, err, sizeof(err)) < 0) {
		if (!err[0])
			abort(); /* refused without a reason */
		return 0;
	}
	for (i = 0; i < img.nr_segs; i++) {
		const struct kernel_seg *s = &img.segs[i];

		if (s->offset > size || s->filesz > size - s->offset ||
		    s->filesz > s->memsz)
			abort();
	}
	return 0;
}
