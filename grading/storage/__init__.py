"""Azure Table Storage and Queue Storage: keys, connections, tables of the grader."""
