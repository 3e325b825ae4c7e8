// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target: the catalog parser must reject or accept any input without crashing or leaking.
 */
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sm_catalog cat;
	struct sm_error err;

	if (sm_catalog_parse(&cat, (const char *) data, size, "fuzz.yaml", &err) == 0)
		sm_catalog_free(&cat);
	return 0;
}
