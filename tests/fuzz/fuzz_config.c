// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the config loader, fed through a memory file, must never crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/sockmesh-fuzz-config-XXXXXX";
	struct sm_config cfg;
	struct sm_error err;
	int fd = mkstemp(path);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t) size) {
		sm_config_defaults(&cfg);
		sm_config_load(&cfg, path, &err);
	}
	close(fd);
	unlink(path);
	return 0;
}
