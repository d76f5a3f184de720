"""Run directories, executing a plan, writing every answer as it arrives."""
