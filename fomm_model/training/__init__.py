"""Training FOMM on your own videos: data, objective, loop, evaluation."""
