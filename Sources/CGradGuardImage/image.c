// PNG through libpng's simplified API; JPEG through libjpeg(-turbo) with an error manager
// that returns to the caller (longjmp) instead of exiting the process on corrupt input.
#include "gg_image.h"
#include <png.h>
#include <stdio.h>
#include <jpeglib.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

void gg_image_free(void *p) { free(p); }

static void set_message(char *message, size_t size, const char *text) {
    if (message && size > 0) {
        strncpy(message, text, size - 1);
        message[size - 1] = 0;
    }
}

int gg_decode_png(const uint8_t *data, size_t size, size_t max_pixels, uint8_t **pixels, int *width, int *height,
                  char *message, size_t message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        set_message(message, message_size, image.message);
        return 1;
    }
    if ((size_t)image.width * image.height > max_pixels) {
        *width = (int)image.width;
        *height = (int)image.height;
        png_image_free(&image);
        return 2;
    }
    image.format = PNG_FORMAT_RGB;   // composites alpha over black; expands palette and grey
    size_t bytes = PNG_IMAGE_SIZE(image);
    uint8_t *buffer = malloc(bytes);
    if (!buffer) {
        png_image_free(&image);
        set_message(message, message_size, "out of memory");
        return 1;
    }
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
        set_message(message, message_size, image.message);
        free(buffer);
        png_image_free(&image);
        return 1;
    }
    *pixels = buffer;
    *width = (int)image.width;
    *height = (int)image.height;
    return 0;
}

int gg_encode_png(const uint8_t *pixels, int width, int height, uint8_t **out, size_t *out_size,
                  char *message, size_t message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = PNG_FORMAT_RGB;
    png_alloc_size_t bytes = 0;
    if (!png_image_write_to_memory(&image, NULL, &bytes, 0, pixels, 0, NULL)) {
        set_message(message, message_size, image.message);
        return 1;
    }
    uint8_t *buffer = malloc(bytes);
    if (!buffer) {
        set_message(message, message_size, "out of memory");
        return 1;
    }
    if (!png_image_write_to_memory(&image, buffer, &bytes, 0, pixels, 0, NULL)) {
        set_message(message, message_size, image.message);
        free(buffer);
        return 1;
    }
    *out = buffer;
    *out_size = bytes;
    return 0;
}

struct gg_jpeg_error {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
};

static void gg_jpeg_error_exit(j_common_ptr info) {
    struct gg_jpeg_error *e = (struct gg_jpeg_error *)info->err;
    longjmp(e->jump, 1);
}

static void gg_jpeg_silent(j_common_ptr info) { (void)info; }

/// Installs the error manager that returns instead of exiting.
static void gg_jpeg_errors(j_common_ptr info, struct gg_jpeg_error *error) {
    info->err = jpeg_std_error(&error->manager);
    error->manager.error_exit = gg_jpeg_error_exit;
    error->manager.output_message = gg_jpeg_silent;
}

/// The message of the error that jumped back, for the caller.
static void gg_jpeg_message(j_common_ptr info, char *message, size_t size) {
    char text[JMSG_LENGTH_MAX];
    (*info->err->format_message)(info, text);
    set_message(message, size, text);
}

int gg_decode_jpeg(const uint8_t *data, size_t size, size_t max_pixels, uint8_t **pixels, int *width, int *height,
                   char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    struct gg_jpeg_error error;
    uint8_t *volatile buffer = NULL;
    gg_jpeg_errors((j_common_ptr)&info, &error);
    if (setjmp(error.jump)) {
        gg_jpeg_message((j_common_ptr)&info, message, message_size);
        jpeg_destroy_decompress(&info);
        free(buffer);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    if ((size_t)info.image_width * info.image_height > max_pixels) {
        *width = (int)info.image_width;
        *height = (int)info.image_height;
        jpeg_destroy_decompress(&info);
        return 2;
    }
    // CMYK and YCCK (print) JPEGs: libjpeg gives CMYK, which becomes RGB here as Pillow
    // converts it, R = (255 − C)(255 − K)/255; Adobe's files store the inks inverted.
    int cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
    info.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&info);
    size_t stride = (size_t)info.output_width * 3;
    buffer = malloc(stride * info.output_height + (cmyk ? (size_t)info.output_width * 4 : 0));
    if (!buffer) {
        jpeg_destroy_decompress(&info);
        set_message(message, message_size, "out of memory");
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        size_t y = info.output_scanline;
        if (cmyk) {
            uint8_t *ink = buffer + stride * info.output_height;
            JSAMPROW row = ink;
            jpeg_read_scanlines(&info, &row, 1);
            uint8_t *rgb = buffer + stride * y;
            for (size_t x = 0; x < info.output_width; x++) {
                unsigned c = ink[4 * x], m = ink[4 * x + 1], ye = ink[4 * x + 2], k = ink[4 * x + 3];
                if (!info.saw_Adobe_marker) { c = 255 - c; m = 255 - m; ye = 255 - ye; k = 255 - k; }
                rgb[3 * x] = (uint8_t)((c * k + 127) / 255);
                rgb[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
                rgb[3 * x + 2] = (uint8_t)((ye * k + 127) / 255);
            }
        } else {
            JSAMPROW row = buffer + stride * y;
            jpeg_read_scanlines(&info, &row, 1);
        }
    }
    jpeg_finish_decompress(&info);
    *width = (int)info.output_width;
    *height = (int)info.output_height;
    jpeg_destroy_decompress(&info);
    *pixels = buffer;
    return 0;
}

int gg_encode_jpeg(const uint8_t *pixels, int width, int height, int quality, uint8_t **out, size_t *out_size,
                   char *message, size_t message_size) {
    struct jpeg_compress_struct info;
    struct gg_jpeg_error error;
    unsigned char *volatile buffer = NULL;
    unsigned long size = 0;
    gg_jpeg_errors((j_common_ptr)&info, &error);
    if (setjmp(error.jump)) {
        gg_jpeg_message((j_common_ptr)&info, message, message_size);
        jpeg_destroy_compress(&info);
        free(buffer);
        return 1;
    }
    jpeg_create_compress(&info);
    unsigned char *target = NULL;
    jpeg_mem_dest(&info, &target, &size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = 3;
    info.in_color_space = JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)info.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    buffer = target;
    jpeg_destroy_compress(&info);
    *out = buffer;
    *out_size = size;
    return 0;
}
