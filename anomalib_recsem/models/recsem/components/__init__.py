"""Parts of RecSem: networks (memory, decoder, discriminator), training-run mechanics and safeguards."""
