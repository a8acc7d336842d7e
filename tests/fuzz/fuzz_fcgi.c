/* libFuzzer driver: make fuzz */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return rq_fuzz_fcgi(data, size);
}
