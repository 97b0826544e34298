# Where the corpus lives: the directory that CONTAINS TEDLIUM_release2/ (as extracted from
# openslr.org/19: TEDLIUM_release2/{train,dev,test}/{sph,stm}). There is no embedded
# TED-LIUM corpus: stage 1 stops with an error while TEDLIUM2 is empty.
TEDLIUM2=${TEDLIUM2:-}
