"""Statistics on fitted mixtures: model selection, the bootstrap of the LRT, goodness of fit."""
