"""The EM driver and its parts: starts, SQUAREM, Newton steps, the cell-level mixture."""
