#ifndef TIERGATE_CXXHASH_SHIM_H
#define TIERGATE_CXXHASH_SHIM_H
#include <xxhash.h>
#endif
