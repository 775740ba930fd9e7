// The fanotify pre-content glue lives here.
