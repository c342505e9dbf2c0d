Ü(
inferB

nvidia.com/mig-1g.10gb
1:
gpupool.dev/acceleratora100R
gpu-node-1’R
P
N
L
.
topology.kubernetes.io/zoneInsim-east-1a
metadata.nameNotInn1²
nvidia.com/gpuExists²
example.com/wait