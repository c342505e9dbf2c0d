_
cB
cpu
2e3mº
gpu"one-h100º
shared	team-gpusÂ

cpu
8
memory
32Gi