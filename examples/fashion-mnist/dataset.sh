# examples/fashion-mnist/dataset.sh: Fashion-MNIST as examples/lib/experiment.sh
# reads a dataset (see its head), for run.sh, experts.sh and longer.sh, which
# source this file. FASHION_MNIST: the IDX folder (default: Debian's).
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
TITLE=Fashion-MNIST
CLASSES="T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle-boot"
TRAIN_X=$DATA/train-images-idx3-ubyte.gz TRAIN_W=$DATA/train-labels-idx1-ubyte.gz
TEST_X=$DATA/t10k-images-idx3-ubyte.gz TEST_W=$DATA/t10k-labels-idx1-ubyte.gz
TRAIN_TEXT="all 60,000 training images" TEST_TEXT="all 10,000 test images"
TARGETS_TEXT="grey levels as Bernoulli targets (as Wu & Goodman)"
PUBLISHED_ROW="| JMVAE, Wu & Goodman 2018 (long runs) | −232.63 | −232.95 | −230.40 | | |"
NOTE=""
prepare_data() { :; } # Debian's dataset-fashion-mnist, installed with the packages
