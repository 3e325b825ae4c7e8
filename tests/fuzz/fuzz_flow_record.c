// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target: the flow-record decoder must survive any line, and what
 * it accepts must encode and decode back to the same record.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flow_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sm_flow_record r, again;
	char *line = malloc(size + 1), *json = NULL;

	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (sm_flow_record_decode(line, &r) == 0 && sm_flow_record_encode(&r, &json) == 0) {
		if (sm_flow_record_decode(json, &again) != 0)
			abort(); /* the encoder wrote something its decoder refuses */
		free(json);
	}
	free(line);
	return 0;
}
