// The libfuse3 low-level glue lives here.
