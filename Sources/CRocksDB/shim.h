#ifndef TIERGATE_CROCKSDB_SHIM_H
#define TIERGATE_CROCKSDB_SHIM_H
#include <rocksdb/c.h>
#endif
