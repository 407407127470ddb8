"""Ray actors: thin shells (construction, Ray plumbing, restart handling) around `actors.core`."""
