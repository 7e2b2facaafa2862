# A profile for a board with a known core: an NXP i.MX 8M Plus (4x Cortex-A53 @1.8 GHz, LPDDR4),
# written from the nearest shipped profile.
edgequant devices new --like rpi3 --name imx8mp --clock 1.8 --cores 4 --memory 4096 --bandwidth 4 \
    --device "NXP i.MX 8M Plus" --out imx8mp.yaml
