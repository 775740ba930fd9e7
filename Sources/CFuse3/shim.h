#ifndef TIERGATE_CFUSE3_SHIM_H
#define TIERGATE_CFUSE3_SHIM_H
/// libfuse3 requires the API level to be chosen before its headers are included.
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#endif
