import sharp from 'sharp';

/** Thumbnail edge in CSS pixels. */
export const THUMB = 112;

/** A small upright JPEG of the image as a data URI; null when it cannot be read. */
export async function thumbnail(file: string): Promise<string | null> {
  try {
    const jpg = await sharp(file).rotate().resize(THUMB, THUMB, { fit: 'inside' }).jpeg({ quality: 70 }).toBuffer();
    return `data:image/jpeg;base64,${jpg.toString('base64')}`;
  } catch {
    return null;
  }
}
