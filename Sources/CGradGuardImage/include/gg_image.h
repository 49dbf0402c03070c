#ifndef GRADGUARD_IMAGE_H
#define GRADGUARD_IMAGE_H
#include <stddef.h>
#include <stdint.h>

/// Decodes a PNG or JPEG held in memory to 8-bit RGB, row-major, 3 bytes a pixel.
/// Returns 0 and sets *pixels (free with gg_image_free), *width and *height; returns 2 with
/// *width and *height set, and nothing decoded, when the header's width × height exceeds
/// `max_pixels` (a decompression bomb); otherwise returns 1 and writes a message of at most
/// `message_size` bytes to `message`.
int gg_decode_png(const uint8_t *data, size_t size, size_t max_pixels, uint8_t **pixels, int *width, int *height,
                  char *message, size_t message_size);
int gg_decode_jpeg(const uint8_t *data, size_t size, size_t max_pixels, uint8_t **pixels, int *width, int *height,
                   char *message, size_t message_size);

/// Encodes 8-bit RGB pixels as PNG or JPEG (quality 1–100) in memory: *out is freed with
/// gg_image_free. Returns 0 on success, otherwise non-zero with a message.
int gg_encode_png(const uint8_t *pixels, int width, int height, uint8_t **out, size_t *out_size,
                  char *message, size_t message_size);
int gg_encode_jpeg(const uint8_t *pixels, int width, int height, int quality, uint8_t **out, size_t *out_size,
                   char *message, size_t message_size);

void gg_image_free(void *p);
#endif
